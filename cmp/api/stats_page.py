"""The consent-statistics page: the impression funnel per bucket, the banner variants side
by side with their Wilson intervals, and the tallies as a table and an SVG line chart,
from the template `cmp/static/stats.html`.

Purpose titles and the site's name are site-supplied: every value goes through
`cmp.api.html.fill`, which escapes it. The page has no script, and its CSP allows
exactly its one stylesheet.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from string import Template
from typing import Final

from cmp.api.html import Html, fill, fragments, join
from cmp.funnel import ignored, shown_rate, two_proportions, wilson
from cmp.models import Purpose
from cmp.store.impressions import EVERY
from cmp.store.stats import ACTIONS, Interval, Tally, bucket_start

# Okabe–Ito colours (tell-apart for colour-blind readers) plus dashes for a second cue.
COLOURS: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
DASHES: Final = ("none", "6 3", "2 3", "8 3 2 3")
ACTION_TITLES: Final = dict(
    zip(ACTIONS, ("Accept all", "Reject all", "Custom", "Withdraw"), strict=True)
)
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 260, 44, 16, 12, 28


def _t(name: str) -> Template:
    return fragments("stats.html")[name]


@cache
def page_headers() -> dict[str, str]:
    style = _t("style").template
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    return {
        "Cache-Control": "private, no-store",
        # Allows exactly the page's stylesheet and nothing else (it has no script at all).
        "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{digest}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",  # the URL is the credential: never pass it on
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex",
    }


@dataclass(frozen=True, slots=True)
class Column:
    """A purpose as the page shows it."""

    key: str
    title: str
    lang: str
    required: bool


def columns(purposes: Iterable[Purpose], seen: Iterable[str], lang: str) -> list[Column]:
    """The current policy's purposes in its order, then any only older versions had."""
    found: list[Column] = []
    for p in purposes:
        title_lang = lang if lang in p.title else next(iter(p.title), lang)
        found.append(Column(p.key, p.title.get(title_lang, p.key), title_lang, p.required))
    known = {c.key for c in found}
    found += [Column(key, key, "", False) for key in sorted(set(seen) - known)]
    return found


def _stroke(i: int) -> tuple[str, str]:
    """Colour, then dash pattern once the colours run out, of the i-th line."""
    return COLOURS[i % len(COLOURS)], DASHES[(i // len(COLOURS)) % len(DASHES)]


def _when(ts: datetime) -> str:
    """A range end as a reader takes it in: the date alone at midnight, else to the
    second (the heading says UTC)."""
    ts = ts.astimezone(UTC)
    if ts == ts.replace(hour=0, minute=0, second=0, microsecond=0):
        return f"{ts:%Y-%m-%d}"
    return f"{ts:%Y-%m-%d %H:%M:%S}"


def _label(ts: datetime, interval: Interval) -> str:
    return ts.strftime("%Y-%m" if interval == "month" else "%Y-%m-%d")


def _rate(tally: Tally, key: str) -> str:
    granted, asked = tally.purposes.get(key, (0, 0))
    return f"{100 * granted / asked:.1f}\u202f%" if asked else "–"


def _title(col: Column) -> Html:
    if col.lang:
        return fill(_t("title"), lang=col.lang, title=col.title)
    return fill(_t("key_title"), title=col.title)


def _chart(
    buckets: Sequence[Tally], lines: Sequence[Column], start: datetime, end: datetime, iv: Interval
) -> Html:
    # The x axis spans the requested range, so gaps without events show as gaps.
    x0 = bucket_start(start, iv)
    x1 = bucket_start(end - timedelta(microseconds=1), iv)
    span = (x1 - x0).total_seconds()
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(ts: datetime) -> str:
        at = LEFT + (plot_w * (ts - x0).total_seconds() / span if span else plot_w / 2)
        return f"{at:.1f}"

    def y(rate: float) -> float:
        return TOP + plot_h * (1 - rate)

    grid = [
        fill(
            _t("grid_line"),
            x1=LEFT,
            x2=W - RIGHT,
            y=f"{y(tick):.1f}",
            label_x=LEFT - 6,
            label_y=f"{y(tick) + 4:.1f}",
            percent=int(tick * 100),
        )
        for tick in (0, 0.25, 0.5, 0.75, 1)
    ]
    axis = [
        fill(_t("axis_label"), x=x(ts), y=H - 8, anchor=anchor, label=_label(ts, iv))
        for ts, anchor in (((x0, "start"), (x1, "end")) if span else ((x0, "middle"),))
    ]
    drawn: list[Html] = []
    legend: list[Html] = []
    for i, col in enumerate(lines):
        colour, dash = _stroke(i)
        points = [
            (b.start, b.purposes[col.key][0] / b.purposes[col.key][1])
            for b in buckets
            if b.start is not None and b.purposes.get(col.key, (0, 0))[1]
        ]
        coords = " ".join(f"{x(ts)},{y(rate):.1f}" for ts, rate in points)
        drawn.append(fill(_t("line"), colour=colour, dash=dash, points=coords, title=col.title))
        # A polyline of one point draws nothing: the dots carry single buckets and tooltips.
        drawn += [
            fill(
                _t("dot"),
                x=x(ts),
                y=f"{y(rate):.1f}",
                colour=colour,
                tip=f"{col.title}, {_label(ts, iv)}: {100 * rate:.1f}%",
            )
            for ts, rate in points
        ]
        legend.append(fill(_t("legend_item"), colour=colour, dash=dash, title=_title(col)))
    return fill(
        _t("chart"),
        width=W,
        height=H,
        grid=join(grid),
        axis=join(axis),
        lines=join(drawn),
        legend=join(legend),
    )


def _row(first: str, tally: Tally, cols: Sequence[Column]) -> Html:
    cells = [first, str(tally.events)]
    cells += [str(tally.actions.get(a, 0)) for a in ACTIONS]
    cells += [_rate(tally, c.key) for c in cols]
    return fill(_t("row"), cells=join([fill(_t("cell"), text=c) for c in cells]))


FUNNEL_HEADINGS: Final = (
    "Bucket start (UTC)",
    "Impressions",
    "Unique visitors (per day)",
    "Interactions",
    "Accept all",
    "Custom",
    "Reject all",
    "Ignored",
    "Accept-all rate",
    "Excluded (API, GPC)",
)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}\u202f%"


def _as_of(first: str, tally: Tally) -> str | Html:
    """The row's heading, with the time of its provisional impression counts if any (on a
    line of its own: the funnel is the widest table)."""
    if tally.as_of is None:
        return first
    # Never broken between the time and UTC.
    time = f"{tally.as_of.astimezone(UTC):%H:%M}\u00a0UTC"
    return fill(_t("as_of"), first=first, time=time)


def _funnel_row(first: str, tally: Tally, bucket: str) -> Html:
    counts, (impressions, visitors) = tally.site, tally.impressions()
    answered = counts.answered
    cells = [
        _as_of(first, tally),
        str(impressions),
        str(visitors),
        str(counts.interactions),
        str(answered.get("accept_all", 0)),
        str(answered.get("custom", 0)),
        str(answered.get("reject_all", 0)),
        str(ignored(impressions, counts.interactions)),
        _percent(shown_rate(answered.get("accept_all", 0), impressions)),
        f"{counts.api_imported}, {counts.gpc_automatic}",
    ]
    return fill(
        _t("funnel_row"), bucket=bucket, cells=join([fill(_t("cell"), text=c) for c in cells])
    )


def _variant_rows(totals: Tally) -> list[Html]:
    rows = []
    cells = sorted({(r, v) for r, v in totals.cells} | {(r, v) for r, v, _ in totals.shown})
    for rule, variant in cells:
        if EVERY in (rule, variant):
            continue
        impressions = totals.impressions(rule, variant)[0]
        accepted = totals.counts(rule, variant).answered.get("accept_all", 0)
        interval = wilson(accepted, impressions)
        share = shown_rate(accepted, impressions)
        lo, hi = interval or (0.0, 0.0)
        bar = fill(
            _t("interval_bar"),
            x=f"{160 * lo:.1f}",
            w=f"{max(160 * (hi - lo), 1):.1f}",
            p=f"{160 * (share or 0):.1f}",
            label=f"{_percent(lo)} to {_percent(hi)}",
        )
        rows.append(
            fill(
                _t("variant_row"),
                rule=rule or "–",
                variant=variant or "(none)",
                impressions=impressions,
                accepted=accepted,
                rate=_percent(share),
                interval=f"{_percent(lo)} – {_percent(hi)}" if interval else "–",
                bar=bar if interval else Html(""),
            )
        )
    return rows


def _verdict(totals: Tally) -> str:
    """Whether the site's variants differ (the pooled two-proportion test, p < 0.05)."""
    named = sorted({v for _, v in totals.cells} | {v for _, v, _ in totals.shown} - {EVERY})
    named = [v for v in named if totals.impressions(EVERY, v)[0]]
    if len(named) < 2:
        return "One variant shown: nothing to compare."
    found = []
    for n, a in enumerate(named):
        for b in named[n + 1 :]:
            test = two_proportions(
                totals.counts(EVERY, a).answered.get("accept_all", 0),
                totals.impressions(EVERY, a)[0],
                totals.counts(EVERY, b).answered.get("accept_all", 0),
                totals.impressions(EVERY, b)[0],
            )
            word = "differ" if test.differs else "do not differ detectably"
            p = "–" if test.p_value is None else f"{test.p_value:.4f}"
            found.append(f"{a} and {b} {word} (two-proportion z-test, p = {p})")
    return "Accept-all rates: " + "; ".join(found) + "."


def _funnel(buckets: Sequence[Tally], totals: Tally, interval: Interval) -> Html:
    header = [fill(_t("column_heading"), heading=h) for h in FUNNEL_HEADINGS]
    rows = [
        _funnel_row(_label(b.start, interval), b, _label(b.start, interval))
        for b in buckets
        if b.start
    ]
    return fill(
        _t("funnel"),
        header=join(header),
        rows=join(rows),
        totals=_funnel_row("Total", totals, "total"),
        variants=join(_variant_rows(totals)),
        verdict=_verdict(totals),
    )


def render_page(
    *,
    site_id: str,
    site_name: str,
    start: datetime,
    end: datetime,
    interval: Interval,
    buckets: Sequence[Tally],
    totals: Tally,
    cols: Sequence[Column],
) -> str:
    """The whole HTML document for one site and range."""
    if not buckets:
        body = fill(_t("empty"))
    else:
        headings = ["Bucket start (UTC)", "Events", *(ACTION_TITLES[a] for a in ACTIONS)]
        header = [fill(_t("column_heading"), heading=h) for h in headings]
        header += [fill(_t("purpose_heading"), title=_title(c)) for c in cols]
        rows = [_row(_label(b.start, interval), b, cols) for b in buckets if b.start]
        body = fill(
            _t("report"),
            funnel=_funnel(buckets, totals, interval),
            chart=_chart(buckets, [c for c in cols if not c.required], start, end, interval),
            header=join(header),
            rows=join(rows),
            totals=_row("Total", totals, cols),
        )
    return fill(
        _t("page"),
        site_name=site_name,
        style=Html(_t("style").template),
        start=_when(start),
        end=_when(end),
        interval=interval,
        site_id=site_id,
        body=body,
    )
