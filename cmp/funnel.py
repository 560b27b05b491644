"""The impression funnel's arithmetic (docs/api.md "Statistics"): rates over impressions,
the 95 % Wilson interval of a rate, the two-proportion test between two variants, and the
median time to decision from binned counts. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

Z95: Final = 1.959963984540054  # the 0.975 quantile of the standard normal
ALPHA: Final = 0.05


def rate(part: int, whole: int) -> float | None:
    """part / whole to 4 decimals; None over nothing."""
    return round(part / whole, 4) if whole else None


def answered(part: int, shown: int) -> int:
    """Answers counted as a part of `shown` impressions: at most all of them.

    A group may hold more answers than showings: a decision can fall in a later bucket
    than its showing, or answer one never counted (a crawler's, one lost on the way, an
    id made up by any page). Its rates over showings stay proportions, as `ignored`
    stays at 0 or more."""
    return min(part, shown)


def ignored(shown: int, interactions: int) -> int:
    """Showings no decision answered (0 at least, for the same reason)."""
    return max(shown - interactions, 0)


def shown_rate(part: int, shown: int) -> float | None:
    """A rate over impressions: answers (capped, `answered`) / showings."""
    return rate(answered(part, shown), shown)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of successes / trials (95 % by default), to 4 decimals.

    Unlike the normal approximation it stays inside [0, 1] and is sound for small counts
    and rates near 0 or 1, which a banner variant's first days have. Successes beyond
    the trials count as all of them (`answered`)."""
    if trials <= 0:
        return None
    p = answered(successes, trials) / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


@dataclass(frozen=True, slots=True)
class Comparison:
    z: float | None
    p_value: float | None
    differs: bool


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> Comparison:
    """The pooled two-proportion z-test of x1/n1 against x2/n2, two-sided: the variants
    differ when p < ALPHA. (Non-overlapping Wilson intervals are a stricter test: two
    intervals can overlap while the difference is significant.) Undefined, and not
    different, when either side has no trials or the pooled rate is 0 or 1. Successes
    beyond a side's trials count as all of them (`answered`)."""
    if n1 <= 0 or n2 <= 0:
        return Comparison(None, None, False)
    x1, x2 = answered(x1, n1), answered(x2, n2)
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return Comparison(None, None, False)
    z = (x1 / n1 - x2 / n2) / spread
    p = math.erfc(abs(z) / math.sqrt(2))
    return Comparison(round(z, 4), round(p, 6), p < ALPHA)


def median_bin(bins: dict[int, int]) -> int | None:
    """The bin of the lower median (the ⌈n/2⌉-th smallest) of binned counts."""
    n = sum(bins.values())
    if n == 0:
        return None
    middle, seen = (n + 1) // 2, 0
    for key in sorted(bins):
        seen += bins[key]
        if seen >= middle:
            return key
    raise AssertionError("unreachable: the counts add up to n")
