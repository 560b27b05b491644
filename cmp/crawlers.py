"""Known crawlers by user agent: their impressions are not counted (docs/api.md).

The list is the maintained one of the `crawler-user-agents` package (monperrus/
crawler-user-agents, MIT): about 1,500 case-sensitive patterns, tried as its
`is_crawler` tries them, in alternations of `CHUNK` (read from its data file, not
imported: the package keeps every entry's description and examples). A check of a new
user agent tries every chunk; user agents repeat (a few browser builds make most
traffic), so answers are cached, and a flood of made-up ones is bounded by the rate
limit that comes first.
"""

from __future__ import annotations

import functools
import re

from cmp.packagedata import package_json

CACHE_SIZE = 8192
CHUNK = 25  # crawleruseragents.CHUNK_SIZE


@functools.lru_cache(maxsize=CACHE_SIZE)
def is_crawler(user_agent: str | None) -> bool:
    """Whether `user_agent` is a known crawler's; no user agent is not one."""
    if not user_agent:
        return False
    return any(p.search(user_agent) for p in _chunks())


@functools.cache
def _chunks() -> tuple[re.Pattern[str], ...]:
    patterns = [
        entry["pattern"] for entry in package_json("crawleruseragents", "crawler-user-agents.json")
    ]
    return tuple(
        re.compile("|".join(patterns[i : i + CHUNK])) for i in range(0, len(patterns), CHUNK)
    )
