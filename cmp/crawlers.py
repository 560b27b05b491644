"""Known crawlers by user agent: their impressions are not counted (docs/api.md).

The list is the maintained one of the `crawler-user-agents` package (monperrus/
crawler-user-agents, MIT): about 1,500 case-sensitive patterns, which its `is_crawler`
tries in chunks. A check of a new user agent costs some 150 µs; user agents repeat (a
few browser builds make most traffic), so answers are cached, and a flood of made-up
ones is bounded by the rate limit that comes first.
"""

from __future__ import annotations

import functools

import crawleruseragents

CACHE_SIZE = 8192


@functools.lru_cache(maxsize=CACHE_SIZE)
def is_crawler(user_agent: str | None) -> bool:
    """Whether `user_agent` is a known crawler's; no user agent is not one."""
    return bool(user_agent) and bool(crawleruseragents.is_crawler(user_agent))
