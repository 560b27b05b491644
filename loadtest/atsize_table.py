"""The at-size results as one markdown table: a column per size, the 20 M : 1 M ratio."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Getter = Callable[[dict[str, Any]], float | None]


def _wrk(name: str, field: str) -> Getter:
    def get(point: dict[str, Any]) -> float | None:
        runs = point.get("wrk", {}).get(name)
        return statistics.median(r[field] for r in runs) if runs else None

    return get


def _at(*path: str) -> Getter:
    def get(point: dict[str, Any]) -> float | None:
        value: Any = point
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value) if isinstance(value, int | float) else None

    return get


def _median(*path: str) -> Getter:
    """The median of a list of numbers at `path`."""

    def get(point: dict[str, Any]) -> float | None:
        value: Any = point
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(statistics.median(value)) if isinstance(value, list) and value else None

    return get


def _kib(getter: Getter) -> Getter:
    def get(point: dict[str, Any]) -> float | None:
        value = getter(point)
        return None if value is None else value / 2**10

    return get


def _mib(getter: Getter) -> Getter:
    def get(point: dict[str, Any]) -> float | None:
        value = getter(point)
        return None if value is None else value / 2**20

    return get


# (label, getter, lower is better, decimals)
ROWS: list[tuple[str, Getter, bool, int]] = [
    ("events in the log", _at("sizes", "events"), True, 0),
    ("ingest POST 1 event, req/s (wrk c=64)", _wrk("ingest-1", "rps"), False, 0),
    ("ingest p50 ms", _wrk("ingest-1", "p50_ms"), True, 1),
    ("ingest p99 ms", _wrk("ingest-1", "p99_ms"), True, 1),
    ("ingest, cmp CPU µs/req", _wrk("ingest-1", "cpu_us_per_req"), True, 0),
    ("ingest, PostgreSQL CPU µs/req", _wrk("ingest-1", "db_cpu_us_per_req"), True, 0),
    ("state GET req/s", _wrk("state", "rps"), False, 0),
    ("state GET p50 ms", _wrk("state", "p50_ms"), True, 1),
    ("state GET, cmp CPU µs/req", _wrk("state", "cpu_us_per_req"), True, 0),
    ("… PostgreSQL CPU µs/req", _wrk("state", "db_cpu_us_per_req"), True, 0),
    ("state GET p99 ms", _wrk("state", "p99_ms"), True, 1),
    ("lookup 100 ids req/s", _wrk("lookup-100", "rps"), False, 0),
    ("lookup 100 ids p50 ms", _wrk("lookup-100", "p50_ms"), True, 1),
    ("lookup 100 ids, cmp CPU µs/req", _wrk("lookup-100", "cpu_us_per_req"), True, 0),
    ("… PostgreSQL CPU µs/req", _wrk("lookup-100", "db_cpu_us_per_req"), True, 0),
    ("lookup 100 ids p99 ms", _wrk("lookup-100", "p99_ms"), True, 1),
    ("subject history p50 ms (1 in flight)", _at("history", "p50_ms"), True, 1),
    ("subject history p99 ms", _at("history", "p99_ms"), True, 1),
    ("erasure p50 ms", _at("erasure", "p50_ms"), True, 1),
    ("erasure p99 ms", _at("erasure", "p99_ms"), True, 1),
    ("… records per erased subject", _median("erasure", "records_each"), True, 0),
    ("… WAL per erasure p50 KB", _kib(_at("erasure", "wal_bytes_p50")), True, 1),
    ("… WAL per erasure p99 KB", _kib(_at("erasure", "wal_bytes_p99")), True, 1),
    ("… WAL per erased record KB", _kib(_at("erasure", "wal_bytes_per_record")), True, 1),
    (
        "export of the big site's newest month, records/s",
        _at("export_month", "records_per_s"),
        False,
        0,
    ),
    ("… records", _at("export_month", "records"), True, 0),
    ("export of the whole big site, records/s", _at("export_site", "records_per_s"), False, 0),
    ("… records", _at("export_site", "records"), True, 0),
    ("… server RSS growth MB", _at("export_site", "rss_growth_mib"), True, 1),
    ("purge of the oldest month, s", _at("purge", "seconds"), True, 2),
    ("… WAL MB", _mib(_at("purge", "wal_bytes")), True, 1),
    ("… records purged", _at("purge", "records_purged"), True, 0),
    ("… ingest beside it (4 in flight): p50 ms", _at("purge", "ingest_beside", "p50_ms"), True, 1),
    ("… ingest beside it: p99 ms", _at("purge", "ingest_beside", "p99_ms"), True, 1),
    ("… ingest beside it: max ms", _at("purge", "ingest_beside", "max_ms"), True, 1),
    ("log bytes per event (table + indexes)", _at("sizes", "log_bytes_per_event"), True, 0),
    ("… with consent_event_ids", _at("sizes", "with_ids_bytes_per_event"), True, 0),
    ("consent_state MB", _mib(_at("sizes", "state_bytes")), True, 1),
    ("… rows (subjects)", _at("sizes", "states"), True, 0),
    ("database size GB", lambda p: (_at("sizes", "database_bytes")(p) or 0) / 2**30, True, 2),
    # The impressions part (loadtest.atsize_impressions), in the largest size's database.
    ("impressions a month (the stats rows below)", _at("impressions", "per_month"), True, 0),
    ("… raw impressions kept (rows)", _at("impressions", "raw_rows"), True, 0),
    (
        "… raw + rollup GB (in the database size)",
        lambda p: (
            None
            if "impressions" not in p
            else (p["impressions"]["raw_bytes"] + p["impressions"]["rollup_bytes"]) / 2**30
        ),
        True,
        2,
    ),
    ("stats read, big site, 30 days by day: p50 ms", _at("impressions", "big", "p50_ms"), True, 1),
    ("… p99 ms", _at("impressions", "big", "p99_ms"), True, 1),
    ("stats read, mid site (site-0010): p50 ms", _at("impressions", "mid", "p50_ms"), True, 1),
    ("… p99 ms", _at("impressions", "mid", "p99_ms"), True, 1),
]


def _fmt(value: float | None, decimals: int) -> str:
    if value is None:
        return "–"
    return f"{value:,.{decimals}f}"


def _label(events: int) -> str:
    return (
        "0 (empty)" if not events else (f"{events / 1e6:g} M" if events >= 10**6 else f"{events:,}")
    )


def table(points: list[dict[str, Any]]) -> str:
    """A column per point (by filled size); the last column compares the two largest."""
    points = sorted(points, key=lambda p: p["events_filled"])
    heads = [_label(p["events_filled"]) for p in points]
    compare = len(points) >= 2 and points[-2]["events_filled"] > 0
    ratio_head = f"{heads[-1]} : {heads[-2]}" if compare else ""
    out = [
        "| | " + " | ".join(heads) + (f" | {ratio_head}" if compare else "") + " |",
        "|---|" + "---:|" * (len(points) + (1 if compare else 0)),
    ]
    for label, get, _lower, decimals in ROWS:
        values = [get(p) for p in points]
        cells = [_fmt(v, decimals) for v in values]
        if compare:
            a, b = values[-1], values[-2]
            cells.append(f"{a / b:.2f}" if a is not None and b else "–")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    empty = points[0] if points and points[0]["events_filled"] == 0 else None
    base = _wrk("ingest-1", "rps")(empty) if empty else None
    if base:
        ratios = [
            f"{_label(p['events_filled'])}: {(_wrk('ingest-1', 'rps')(p) or 0) / base:.2f}"
            for p in points[1:]
        ]
        out.append("")
        out.append(
            "Ingest req/s as a ratio to the empty log — "
            + "; ".join(ratios)
            + " (goal ≥ 0.9 at 20 M)."
        )
    return "\n".join(out)
