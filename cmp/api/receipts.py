"""Transparency-log answers: tree proofs (audit scope), the visitor's receipt (public),
and the note verifier key beside the public key document."""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from cmp.api.access import Context, SiteContext
from cmp.api.collect import client_ip, cors_headers
from cmp.api.json import dumps, json_response
from cmp.api.problems import Problem
from cmp.appkeys import CATALOG, LIMITER, SETTINGS, SIGNER, TREE
from cmp.audit import notes
from cmp.audit.chain import hashed_part, subject_digest
from cmp.audit.iso27560 import Controller, consent_record
from cmp.ingest.facts import ip_prefix
from cmp.store import audit as audit_store
from cmp.store.audit import ExportFilter
from cmp.store.sites import StoredSite
from cmp.treelog import NotIntegrated, TooManyTreeHeads
from cmp.values import EVENT_ID_RE, SITE_ID_RE, SUBJECT_ID_RE, origin_allowed

MAX_SIZE = 1 << 62


def b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(x).decode("ascii") for x in items]


def _int(request: web.Request, name: str, minimum: int) -> int:
    raw = request.query.get(name, "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not (
        minimum <= int(raw) < MAX_SIZE
    ):
        raise Problem(
            422,
            f"'{name}' must be an integer ≥ {minimum}",
            code="validation",
            errors=[{"pointer": f"/{name}", "detail": "not a valid number"}],
        )
    return int(raw)


def _retry_after(request: web.Request) -> str:
    return str(max(1, math.ceil(2 * request.app[SETTINGS].log_integration_seconds)))


def _beyond(request: web.Request, exc: NotIntegrated, name: str) -> Problem:
    return Problem(
        422,
        f"{exc}; a checkpoint covers at most {exc.latest} records now",
        code="validation",
        errors=[{"pointer": f"/{name}", "detail": "beyond the signed tree"}],
        headers={"Retry-After": _retry_after(request)},
    )


def _too_many(exc: TooManyTreeHeads) -> Problem:
    return Problem(
        429,
        "too many checkpoints for new sizes; ask for a stored size or retry",
        code="rate-limited",
        headers={"Retry-After": str(int(exc.retry_after) + 1)},
    )


async def get_inclusion(request: web.Request, ctx: SiteContext) -> web.Response:
    """RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves."""
    site = ctx.site
    size = _int(request, "size", 1)
    index = _int(request, "index", 0)
    if index >= size:
        raise Problem(
            422,
            "'index' must be smaller than 'size'",
            code="validation",
            errors=[{"pointer": "/index", "detail": "not in the tree"}],
        )
    try:
        tree_head, proof = await request.app[TREE].inclusion(site.site_id, index, size)
    except NotIntegrated as exc:
        raise _beyond(request, exc, "size") from None
    except TooManyTreeHeads as exc:
        raise _too_many(exc) from None
    return json_response(
        {
            "site_id": site.site_id,
            "index": index,
            "size": size,
            "root_hash": base64.b64encode(tree_head.root).decode("ascii"),
            "checkpoint": tree_head.note,
            "inclusion_proof": b64(proof),
        }
    )


async def get_consistency(request: web.Request, ctx: SiteContext) -> web.Response:
    """RFC 9162 consistency proof between the trees of `from` and `to` leaves."""
    site = ctx.site
    old = _int(request, "from", 1)
    new = _int(request, "to", 1)
    if old > new:
        raise Problem(
            422,
            "'from' must not be larger than 'to'",
            code="validation",
            errors=[{"pointer": "/from", "detail": "larger than to"}],
        )
    try:
        old_tree_head, new_tree_head, proof = await request.app[TREE].consistency(
            site.site_id, old, new
        )
    except NotIntegrated as exc:
        raise _beyond(request, exc, "to") from None
    except TooManyTreeHeads as exc:
        raise _too_many(exc) from None
    return json_response(
        {
            "site_id": site.site_id,
            "from": old,
            "to": new,
            "from_checkpoint": old_tree_head.note,
            "checkpoint": new_tree_head.note,
            "consistency_proof": b64(proof),
        }
    )


async def get_receipt(request: web.Request, ctx: Context) -> web.Response:
    """The visitor's receipt: their record, its leaf index, a signed checkpoint, and the
    inclusion proof. The pair (event id, subject id) is the capability: anything that
    does not name a record of this site is 404, whatever was wrong — a missing site too,
    which is why this route looks the site up itself."""
    origin = request.headers.get("Origin")
    site_id = ctx.site_id
    assert site_id is not None  # the route's path names the site (routes.py)
    site = await request.app[CATALOG].site(site_id)
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if site is not None and origin is not None and origin_allowed(site.origins, origin):
        headers.update(cors_headers(origin))
    not_found = Problem(404, "no such receipt", code="not-found", headers=headers)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "iso27560"):
        raise Problem(
            422,
            "format must be json or iso27560",
            code="validation",
            errors=[{"pointer": "/format", "detail": "json | iso27560"}],
            headers=headers,
        )
    subject_id = request.query.get("subject_id", "")
    raw_event_id = request.match_info["event_id"]
    # uuid.UUID would also take braces, a urn: prefix or no hyphens, which the path's
    # documented pattern refuses.
    if (
        site is None
        or not EVENT_ID_RE.fullmatch(raw_event_id)
        or not SUBJECT_ID_RE.fullmatch(subject_id)
    ):
        raise not_found
    event_id = uuid.UUID(raw_event_id)
    # Public and a few database reads each: the collect endpoints' bucket, apart.
    prefix = ip_prefix(client_ip(request)) or "-"
    wait = request.app[LIMITER].take(site_id, f"receipt {prefix}")
    if wait > 0:
        raise Problem(
            429,
            "too many receipt requests from this network for this site",
            code="rate-limited",
            headers={**headers, "Retry-After": str(int(wait) + 1)},
        )
    digest = subject_digest(site.subject_key, subject_id)
    try:
        receipt = await request.app[TREE].receipt(site_id, event_id, digest)
    except NotIntegrated:
        return json_response(
            {"status": "pending", "detail": "the record is not in a signed checkpoint yet"},
            status=202,
            headers={**headers, "Retry-After": _retry_after(request)},
        )
    if receipt is None:
        raise not_found
    body: dict[str, Any] = {
        "record": receipt.record,
        "leaf_index": receipt.leaf_index,
        "checkpoint": receipt.checkpoint,
        "inclusion_proof": b64(receipt.inclusion_proof),
    }
    if receipt.record["v"] >= 2:
        body["disclosures"] = receipt.disclosures
    if fmt == "iso27560":
        controllers = Controllers(request, site)
        body["iso27560"] = consent_record(receipt.record, await controllers(receipt.record))
    return json_response(body, headers=headers)


class Controllers:
    """The 27560 controller facts of a site, with the policy URL of each version asked."""

    def __init__(self, request: web.Request, site: StoredSite) -> None:
        self._catalog = request.app[CATALOG]
        self._site = site
        self._urls: dict[int | None, str | None] = {None: None}

    async def __call__(self, record: dict[str, Any]) -> Controller:
        version: int | None = record.get("policy_version")
        if version not in self._urls:
            assert version is not None  # None is in the map from the start
            policy = await self._catalog.policy(self._site.site_id, version)
            self._urls[version] = policy.policy_url if policy else None
        s = self._site
        return Controller(
            name=s.controller_name,
            contact=s.controller_contact,
            jurisdiction=s.jurisdiction,
            withdrawal_url=s.withdrawal_url,
            policy_url=self._urls[version],
        )


async def public_key(request: web.Request, ctx: Context) -> web.Response:
    """The public key document; with `?site_id=`, also that site's log origin and its
    note verifier key (`<origin>+<key id>+<key>`)."""
    doc: dict[str, Any] = dict(request.app[SIGNER].public_key_document())
    host = request.app[TREE].public_host
    doc["note_origin"] = notes.origin_of(host, "{site_id}")
    site_id = request.query.get("site_id")
    if site_id is not None:
        if not SITE_ID_RE.fullmatch(site_id):
            raise Problem(
                422,
                "site_id is not a site id",
                code="validation",
                errors=[{"pointer": "/site_id", "detail": "not a site id"}],
            )
        origin = notes.origin_of(host, site_id)
        doc["origin"] = origin
        doc["note_verifier_key"] = notes.verifier_key(origin, request.app[SIGNER].public_key)
    return json_response(doc, headers={"Cache-Control": "public, max-age=3600"})


async def tree_fields(request: web.Request, site_id: str) -> dict[str, Any] | None:
    """The newest signed tree head for GET …/log/checkpoint (None before the first)."""
    tree_head = await request.app[TREE].latest(site_id)
    if tree_head is None:
        return None
    return {
        "size": tree_head.size,
        "root_hash": base64.b64encode(tree_head.root).decode("ascii"),
        "chain_hash": tree_head.chain_hash,
        "signed_at": tree_head.signed_at,
        "note": tree_head.note,
        # The chain head at the same size, in the JSON checkpoint form `cmpd verify`
        # takes: one key signs both, so the two heads are bound to each other.
        "chain_checkpoint": (
            request.app[SIGNER].sign_checkpoint(site_id, tree_head.size, tree_head.chain_hash)
            if tree_head.chain_hash
            else None
        ),
    }


async def write_iso27560(
    request: web.Request,
    site: StoredSite,
    conn: asyncpg.Connection,
    where: ExportFilter,
    write: Callable[[bytes], Awaitable[None]],
) -> None:
    """The export as ISO/IEC TS 27560 consent records, one JSON document per line."""
    controllers = Controllers(request, site)
    async with audit_store.export_lines(conn, where) as chunks:
        async for lines in chunks:
            out = []
            for line in lines:
                record = hashed_part(orjson.loads(line))
                out.append(dumps(consent_record(record, await controllers(record))))
            await write(b"\n".join(out) + b"\n")
