"""The consent-statistics page: signed links, the range grammar, and the HTML, all pure.

A bearer key cannot travel in a link, so `GET /v1/sites/{site_id}/stats.html` is
authorized by a short-lived signature instead: `sig` is base64url (no padding) of an
Ed25519 signature by the server's key over
``stats.html|{site_id}|{expires}|{from}|{to}|{interval}`` (each the raw query value, ""
when absent). `cmpd stats-url` mints such links with `signed_stats_url`.

The page is one self-contained document: a table and an inline SVG line chart, no
script, no external asset, every text escaped — purpose titles are site-supplied.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Final
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cmp.audit.signing import Signer
from cmp.models import Purpose
from cmp.store.stats import ACTIONS, INTERVALS, Interval, Tally, bucket_start
from cmp.values import SITE_ID_RE

# --- the range grammar (shared by the JSON API, the page and the link minter) -------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
# An unencoded "+01:00" in a query string arrives as " 01:00" (form decoding).
_PLUS_LOST = re.compile(r"(:\d{2}(?:\.\d+)?) (\d{2}:\d{2})$")


# The widest offset ISO 8601 profiles allow (real zones span -12:00 … +14:00).
MAX_OFFSET: Final = timedelta(hours=18)


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
    text = _PLUS_LOST.sub(r"\1+\2", raw.strip())
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


# --- signed links -------------------------------------------------------------------

SIGNED_PARAMS: Final = ("from", "to", "interval", "expires", "sig")
MAX_TTL_SECONDS: Final = 7 * 86400  # a link, not a credential: short-lived by design
_SIG = re.compile(r"[A-Za-z0-9_-]{86}")  # 64 signature bytes, base64url, no padding
_EXPIRES = re.compile(r"[0-9]{1,12}")


def stats_message(site_id: str, expires: str, from_: str, to: str, interval: str) -> bytes:
    """The signed bytes. The "stats.html|" prefix keeps them apart from checkpoint
    messages (canonical JSON, which starts with "{"), so one key serves both safely;
    no field may hold "|", so the split is unambiguous."""
    return "|".join(("stats.html", site_id, expires, from_, to, interval)).encode("utf-8")


def _sign(signer: Signer, message: bytes) -> bytes:
    # Signer exposes checkpoint signing only; the domain-separated message above makes
    # using its key for links safe. A public Signer.sign(bytes) would replace this.
    return signer._private_key.sign(message)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def link_problem(
    public_key: Ed25519PublicKey, site_id: str, query: Mapping[str, str], now: float
) -> str | None:
    """Why the query does not authorize the page of `site_id`; None when it does."""
    expires, sig = query.get("expires", ""), query.get("sig", "")
    fields = [query.get(name, "") for name in ("from", "to", "interval")]
    if not expires or not sig:
        return "this page needs a signed link (expires and sig); see `cmpd stats-url`"
    if not _EXPIRES.fullmatch(expires) or not _SIG.fullmatch(sig) or "|" in "".join(fields):
        return "the link's signature is not valid"
    try:
        signature = base64.urlsafe_b64decode(sig + "==")
        public_key.verify(signature, stats_message(site_id, expires, *fields))
    except (InvalidSignature, binascii.Error, ValueError):
        return "the link's signature is not valid"
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
    return value.strip()


def signed_stats_url(
    signer: Signer,
    base_url: str,
    site_id: str,
    *,
    ttl_seconds: int = 900,
    from_: str | date | None = None,
    to: str | date | None = None,
    interval: str = "day",
    now: float | None = None,
) -> str:
    """A link to the statistics page of `site_id`, valid for `ttl_seconds`.

    `from_`/`to` take RFC 3339 strings, dates or aware datetimes (None: the page's
    defaults, the last 30 days up to when it is opened). ValueError on bad input.
    """
    if not SITE_ID_RE.fullmatch(site_id):
        raise ValueError(f"not a site id: {site_id!r}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    start, end = _link_value(from_), _link_value(to)
    expires = str(int(time.time() if now is None else now) + ttl_seconds)
    signature = _sign(signer, stats_message(site_id, expires, start, end, interval))
    params = {"from": start, "to": end, "interval": interval}
    query = {k: v for k, v in params.items() if v} | {"expires": expires, "sig": _b64url(signature)}
    return f"{base_url.rstrip('/')}/v1/sites/{site_id}/stats.html?{urlencode(query)}"


# --- the page -----------------------------------------------------------------------


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


CSS: Final = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}
body{color:#1a1a1a}
h1{font-size:1.4rem;margin:0 0 .25rem}p.range{color:#555;margin:0 0 1.5rem}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;margin-top:1.5rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left;white-space:nowrap}tfoot td{font-weight:600}
.scroll{overflow-x:auto}
caption{text-align:left;font-weight:600;padding-bottom:.4rem}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1rem;margin:.5rem 0}
svg text{font-size:11px;fill:#555}.empty{padding:2rem;background:#f6f6f6;text-align:center}
""".strip()
# Allows exactly this stylesheet and nothing else (the page has no script at all).
CSP: Final = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Okabe–Ito colours (tell-apart for colour-blind readers) plus dashes for a second cue.
COLOURS: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
DASHES: Final = ("", "6 3", "2 3", "8 3 2 3")
ACTION_TITLES: Final = dict(
    zip(ACTIONS, ("Accept all", "Reject all", "Custom", "Withdraw"), strict=True)
)
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 260, 44, 16, 12, 28


def _stroke(i: int) -> str:
    """Colour, then dash pattern once the colours run out, of the i-th line."""
    dash = DASHES[(i // len(COLOURS)) % len(DASHES)]
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return f'stroke="{COLOURS[i % len(COLOURS)]}"{dashed}'


def _label(ts: datetime, interval: Interval) -> str:
    return ts.strftime("%Y-%m" if interval == "month" else "%Y-%m-%d")


def _rate(tally: Tally, key: str) -> str:
    granted, asked = tally.purposes.get(key, (0, 0))
    return f"{100 * granted / asked:.1f}\u202f%" if asked else "–"


def _title(col: Column) -> str:
    lang = f' lang="{escape(col.lang)}"' if col.lang else ""
    return f"<span{lang}>{escape(col.title)}</span>"


def _chart(
    buckets: Sequence[Tally], lines: Sequence[Column], start: datetime, end: datetime, iv: Interval
) -> str:
    # The x axis spans the requested range, so gaps without events show as gaps.
    x0 = bucket_start(start, iv)
    x1 = bucket_start(end - timedelta(microseconds=1), iv)
    span = (x1 - x0).total_seconds()
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(ts: datetime) -> float:
        return LEFT + (plot_w * (ts - x0).total_seconds() / span if span else plot_w / 2)

    def y(rate: float) -> float:
        return TOP + plot_h * (1 - rate)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" '
        'role="img" aria-labelledby="chart-title">'
        '<title id="chart-title">Opt-in rate per purpose over time</title>'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{int(tick * 100)}%</text>'
        )
    for ts, anchor in ((x0, "start"), (x1, "end")) if span else ((x0, "middle"),):
        parts.append(
            f'<text x="{x(ts):.1f}" y="{H - 8}" text-anchor="{anchor}">{_label(ts, iv)}</text>'
        )
    for i, col in enumerate(lines):
        points = [
            (b.start, b.purposes[col.key][0] / b.purposes[col.key][1])
            for b in buckets
            if b.start is not None and b.purposes.get(col.key, (0, 0))[1]
        ]
        coords = " ".join(f"{x(ts):.1f},{y(rate):.1f}" for ts, rate in points)
        parts.append(
            f'<polyline fill="none" {_stroke(i)} stroke-width="2" '
            f'points="{coords}"><title>{escape(col.title)}</title></polyline>'
        )
        # A polyline of one point draws nothing: the dots carry single buckets and tooltips.
        for ts, rate in points:
            tip = f"{col.title}, {_label(ts, iv)}: {100 * rate:.1f}%"
            fill = COLOURS[i % len(COLOURS)]
            parts.append(
                f'<circle cx="{x(ts):.1f}" cy="{y(rate):.1f}" r="3" fill="{fill}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<li><svg width="24" height="10" aria-hidden="true"><line x1="0" x2="24" y1="5" y2="5" '
        f'{_stroke(i)} stroke-width="3"/></svg> {_title(col)}</li>'
        for i, col in enumerate(lines)
    )
    return "".join(parts) + f'<ul class="legend">{legend}</ul>'


def _row(first: str, tally: Tally, cols: Sequence[Column]) -> str:
    cells = [first, str(tally.events)]
    cells += [str(tally.actions.get(a, 0)) for a in ACTIONS]
    cells += [_rate(tally, c.key) for c in cols]
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


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
    heading = f"Consent statistics — {escape(site_name)}"
    range_text = (
        f"{escape(format_instant(start))} to {escape(format_instant(end))} (UTC, end exclusive), "
        f"per {escape(interval)} · site <code>{escape(site_id)}</code>"
    )
    if not buckets:
        body = (
            '<p class="empty">No consent events in this range. Events appear here once '
            "the banner has recorded choices.</p>"
        )
    else:
        lines = [c for c in cols if not c.required]
        head = ["Bucket start (UTC)", "Events", *(ACTION_TITLES[a] for a in ACTIONS)]
        header = "".join(f'<th scope="col">{escape(h)}</th>' for h in head) + "".join(
            f'<th scope="col">{_title(c)} opt-in</th>' for c in cols
        )
        rows = "".join(_row(_label(b.start, interval), b, cols) for b in buckets if b.start)
        body = (
            _chart(buckets, lines, start, end, interval)
            + '<div class="scroll"><table>'
            + "<caption>Events per action and opt-in rate per purpose</caption>"
            + f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody>"
            + f"<tfoot>{_row('Total', totals, cols)}</tfoot></table></div>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex"><meta name="referrer" content="no-referrer">'
        f"<title>{heading}</title><style>{CSS}</style></head><body>"
        f'<h1>{heading}</h1><p class="range">{range_text}</p>{body}</body></html>'
    )
