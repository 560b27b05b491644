"""Instants and ranges in query strings: one grammar for the stats, the stats page, its
signed links and the export.

An instant is an RFC 3339 timestamp or a date (midnight UTC); nothing looser (no Unix
seconds, no time without an offset). Failures are collected as JSON-pointer errors, so
the HTTP layer answers one 422 naming every bad parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, cast

from cmp.store.stats import INTERVALS, Interval

# ASCII: Python's \d takes every script's digits, RFC 3339 only 0-9.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# An offset's minutes stop at 59: Python takes "+01:80" (as 2 h 20 min), RFC 3339 does not.
_STAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:[0-5]\d)",
    re.ASCII,
)
# An unencoded "+01:00" in a query string arrives as " 01:00" (form decoding).
_PLUS_LOST = re.compile(r"(:\d{2}(?:\.\d+)?) (\d{2}:\d{2})$", re.ASCII)

# The widest offset ISO 8601 profiles allow (real zones span -12:00 … +14:00).
MAX_OFFSET: Final = timedelta(hours=18)
INSTANT_HINT: Final = (
    "must be an RFC 3339 timestamp (2026-11-21T10:00:00Z) or a date (2026-11-21); "
    "offsets within ±18:00, instants within years 1–9999 in UTC"
)
# A stats range without `from`: this long up to `to`.
DEFAULT_SPAN: Final = timedelta(days=30)
# Daily buckets over more than two years are a table nobody reads and a heavy query.
MAX_DAILY_SPAN: Final = timedelta(days=731)

Errors = list[dict[str, str]]


class RangeError(ValueError):
    """Query parameters that do not make a range; `errors` has a pointer for each."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{e['pointer']} {e['detail']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class StatsRange:
    start: datetime  # inclusive
    end: datetime  # exclusive
    interval: Interval


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC (naive counts as UTC), or ValueError: an offset beyond ±18:00, or
    an instant outside years 1–9999 once in UTC (Python cannot hold it, and asyncpg fails
    encoding it — after the answer's headers, in an export)."""
    offset = value.utcoffset()
    if offset is None:
        return value.replace(tzinfo=UTC)
    if abs(offset) > MAX_OFFSET:
        raise ValueError("offset beyond ±18:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside years 1–9999 in UTC") from None


def parse_instant(raw: str) -> datetime:
    """An RFC 3339 timestamp or a date (midnight UTC) as an aware UTC datetime.

    ValueError for anything else: no naive times (RFC 3339 requires the offset).
    """
    # Not trimmed: surrounding white space is not in the documented forms.
    text = _PLUS_LOST.sub(r"\1+\2", raw)
    try:
        if _DATE.fullmatch(text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        found = _STAMP.fullmatch(text)
        if found is None:
            raise ValueError(text)
        day, clock, fraction, offset = found.groups()
        # Python keeps microseconds; finer digits are cut, not rounded into the next second.
        micros = f".{(fraction or '')[:6]:0<6}"
        offset = "+00:00" if offset in ("Z", "z") else offset
        return utc_instant(datetime.fromisoformat(f"{day}T{clock}{micros}{offset}"))
    except (ValueError, OverflowError):
        raise ValueError(f"not an RFC 3339 timestamp or a date: {raw!r}") from None


def format_instant(ts: datetime) -> str:
    """RFC 3339 UTC with Z; fractional seconds only when there are any."""
    ts = ts.astimezone(UTC).replace(tzinfo=None)
    spec = "microseconds" if ts.microsecond else "seconds"
    return ts.isoformat(timespec=spec) + "Z"


def read_instants(
    query: Mapping[str, str], errors: Errors, *, empty_is_absent: bool = False
) -> dict[str, datetime]:
    """The `from` and `to` the query gives, parsed; a bad one is added to `errors`.

    With `empty_is_absent`, `from=` counts as not given (the export's documented rule).
    """
    given: dict[str, datetime] = {}
    for name in ("from", "to"):
        raw = query.get(name)
        if raw is None or (empty_is_absent and raw == ""):
            continue
        try:
            given[name] = parse_instant(raw)
        except ValueError:
            errors.append({"pointer": f"/{name}", "detail": INSTANT_HINT})
    return given


def export_window(query: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """(since, until) of an export, either open; RangeError on a bad one. Read before the
    query runs: once the answer's headers are out, a failure can no longer be a 422."""
    errors: Errors = []
    given = read_instants(query, errors, empty_is_absent=True)
    if errors:
        raise RangeError(errors)
    return given.get("from"), given.get("to")


def stats_range(query: Mapping[str, str], now: datetime) -> StatsRange:
    """The query's stats range with its defaults (the last 30 days up to now, per day);
    RangeError naming every bad parameter."""
    errors: Errors = []
    interval = query.get("interval", "day")
    if interval not in INTERVALS:
        errors.append({"pointer": "/interval", "detail": f"must be one of {', '.join(INTERVALS)}"})
    given = read_instants(query, errors)
    if errors:
        raise RangeError(errors)
    end = given.get("to", now)
    try:
        start = given.get("from") or end - DEFAULT_SPAN
    except OverflowError:
        raise RangeError([{"pointer": "/to", "detail": "is out of range"}]) from None
    if start >= end:
        raise RangeError([{"pointer": "/from", "detail": "must be before 'to' (default: now)"}])
    if interval == "day" and end - start > MAX_DAILY_SPAN:
        detail = "a range per day may span at most 731 days; use interval=week or interval=month"
        raise RangeError([{"pointer": "/from", "detail": detail}])
    return StatsRange(start, end, cast(Interval, interval))  # checked above
