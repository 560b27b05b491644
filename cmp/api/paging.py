"""Paginated listings: `?limit=&after=` in, one page and a `next` link out.

A listing is ordered by a key of its own (a key's creation, a policy's version); `after`
is that key of the last item of the previous page, and `next` is the path and query of
the following page, or null on the last. An `after` that names nothing of the listing
gives an empty page; a malformed `limit` or `after` is a 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from cmp.api.validation import query_problem

_LIMIT = re.compile(r"[1-9][0-9]{0,5}")


@dataclass(frozen=True, slots=True)
class Listing:
    """How one listing pages: its default and largest page, and its cursor's form."""

    default: int
    maximum: int
    after: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class PageQuery:
    limit: int
    after: str | None


def page_query(request: web.Request, listing: Listing) -> PageQuery:
    """The request's page, or a 422 naming each bad parameter."""
    errors = []
    raw_limit = request.query.getall("limit", [])
    limit = listing.default
    if raw_limit:
        if len(raw_limit) > 1 or not _LIMIT.fullmatch(raw_limit[0]):
            errors.append({"pointer": "/limit", "detail": "must be a positive integer, once"})
        elif int(raw_limit[0]) > listing.maximum:
            errors.append({"pointer": "/limit", "detail": f"must be at most {listing.maximum}"})
        else:
            limit = int(raw_limit[0])
    raw_after = request.query.getall("after", [])
    after = raw_after[0] if raw_after else None
    if len(raw_after) > 1 or (after is not None and not listing.after.fullmatch(after)):
        errors.append({"pointer": "/after", "detail": "must be the cursor of a previous page"})
    if errors:
        raise query_problem(errors)
    return PageQuery(limit, after)


def page_body(
    request: web.Request, name: str, items: list[dict[str, Any]], page: PageQuery, cursor: str
) -> dict[str, Any]:
    """`{name: items[:limit], "next": …}` from one row more than the page (which tells
    whether another page follows); `cursor` is the field that orders the listing."""
    shown = items[: page.limit]
    more = len(items) > page.limit
    query = urlencode({"limit": page.limit, "after": shown[-1][cursor]}) if more else ""
    return {name: shown, "next": f"{request.rel_url.raw_path}?{query}" if more else None}
