"""Signed links to the consent-statistics page: minted by `cmpd stats-url`, checked by
the page.

A bearer key cannot travel in a link, so `GET /v1/sites/{site_id}/stats.html` is
authorized by a short-lived signature instead: `sig` is base64url (no padding) of
HMAC-SHA256 under the site's own stats-link key over
``stats.html|{site_id}|{expires}|{from}|{to}|{interval}`` (each the raw query value, ""
when absent). Replacing the site's key (`DELETE /v1/sites/{site_id}/stats-links`)
revokes every link minted before, and nothing else (docs/operations.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Final
from urllib.parse import urlencode

from cmp.store.stats import INTERVALS
from cmp.timerange import format_instant, parse_instant, stats_range
from cmp.values import SITE_ID_RE

SIGNED_PARAMS: Final = ("from", "to", "interval", "expires", "sig")
MAX_TTL_SECONDS: Final = 7 * 86400  # a link, not a credential: short-lived by design
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 HMAC-SHA256 bytes, base64url, no padding
_EXPIRES = re.compile(r"[0-9]{1,12}")
NOT_VALID: Final = "the link's signature is not valid"


def stats_message(site_id: str, expires: str, from_: str, to: str, interval: str) -> bytes:
    """The signed bytes; no field may hold "|", so the split is unambiguous."""
    return "|".join(("stats.html", site_id, expires, from_, to, interval)).encode("utf-8")


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, hashlib.sha256)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def link_problem(
    key: bytes | None, site_id: str, query: Mapping[str, str], now: float
) -> str | None:
    """Why the query does not authorize the page of `site_id` whose stats-link key is
    `key` (None: no such site, refused like a forged link); None when it does."""
    expires, sig = query.get("expires", ""), query.get("sig", "")
    fields = [query.get(name, "") for name in ("from", "to", "interval")]
    if not expires or not sig:
        return "this page needs a signed link (expires and sig); see `cmpd stats-url`"
    if not _EXPIRES.fullmatch(expires) or not _SIG.fullmatch(sig) or "|" in "".join(fields):
        return NOT_VALID
    expected = _b64url(_mac(key, stats_message(site_id, expires, *fields))) if key else ""
    if not hmac.compare_digest(sig, expected):
        return NOT_VALID
    # Checked after the signature, so "expired" is only ever said of a genuine link.
    if int(expires) <= now:
        return "the link has expired; ask for a new one"
    return None


def _link_value(value: str | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("from/to datetimes must be timezone-aware")
        return format_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    parse_instant(value)  # a link the page would refuse is no use to anyone
    return value


def signed_stats_url(
    key: bytes,
    base_url: str,
    site_id: str,
    *,
    ttl_seconds: int = 900,
    from_: str | date | None = None,
    to: str | date | None = None,
    interval: str = "day",
    now: float | None = None,
) -> str:
    """A link to the statistics page of `site_id` (whose stats-link key is `key`), valid
    for `ttl_seconds`.

    `from_`/`to` take RFC 3339 strings, dates or aware datetimes (None: the page's
    defaults, the last 30 days up to when it is opened). ValueError on bad input and on
    a range the page would refuse if opened now.
    """
    if not SITE_ID_RE.fullmatch(site_id):
        raise ValueError(f"not a site id: {site_id!r}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    start, end = _link_value(from_), _link_value(to)
    moment = time.time() if now is None else now
    given = {"from": start, "to": end, "interval": interval}
    stats_range({k: v for k, v in given.items() if v}, datetime.fromtimestamp(moment, UTC))
    expires = str(int(moment) + ttl_seconds)
    signature = _mac(key, stats_message(site_id, expires, start, end, interval))
    params = {"from": start, "to": end, "interval": interval}
    query = {k: v for k, v in params.items() if v} | {"expires": expires, "sig": _b64url(signature)}
    return f"{base_url.rstrip('/')}/v1/sites/{site_id}/stats.html?{urlencode(query)}"
