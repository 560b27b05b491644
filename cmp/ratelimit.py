"""Token buckets per (site, IP prefix) for the public collect endpoints."""

from __future__ import annotations

import time
from collections import OrderedDict

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def take(self, site_id: str, prefix: str, cost: float = 1.0) -> float:
        """0.0 when allowed; otherwise seconds until `cost` tokens are available."""
        now = time.monotonic()
        key = (site_id, prefix)
        tokens, stamp = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - stamp) * self._rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self._rate
        self._buckets[key] = (tokens - cost, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return 0.0
