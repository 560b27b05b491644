"""Audit and data-subject requests: export, checkpoints, public key, access, erasure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.consent import subject_id_of
from cmp.api.json import json_response
from cmp.api.problems import Problem
from cmp.api.receipts import tree_fields, write_iso27560
from cmp.api.streaming import PacedStream
from cmp.api.validation import query_problem
from cmp.appkeys import LONG_READS, POOL, REQUEST_ID, SETTINGS, SIGNER
from cmp.audit.chain import subject_digest
from cmp.store import audit as audit_store
from cmp.store.audit import ExportFilter
from cmp.store.sites import StoredSite
from cmp.timerange import RangeError, export_window
from cmp.values import SUBJECT_ID_RE, version_number


def export_filter(request: web.Request, site: StoredSite) -> ExportFilter:
    version = request.query.get("policy_version")
    if version is not None and version_number(version) is None:
        raise Problem(
            422,
            "policy_version must be a positive integer",
            code="validation",
            errors=[{"pointer": "/policy_version", "detail": "not a version"}],
        )
    subject = request.query.get("subject_id")
    if subject is not None and not SUBJECT_ID_RE.fullmatch(subject):
        raise Problem(
            422,
            "subject_id is not valid",
            code="validation",
            errors=[{"pointer": "/subject_id", "detail": "not a subject id"}],
        )
    try:
        since, until = export_window(request.query)
    except RangeError as exc:
        raise query_problem(exc.errors) from None
    return ExportFilter(
        site_id=site.site_id,
        since=since,
        until=until,
        policy_version=int(version) if version else None,
        subject_digest=subject_digest(site.subject_key, subject) if subject else None,
    )


async def export_events(request: web.Request, ctx: SiteContext) -> web.StreamResponse:
    """Stream the log in seq order (jsonl or csv), gzip when the client accepts it."""
    site = ctx.site
    where = export_filter(request, site)
    fmt = request.query.get("format", "jsonl")
    if fmt not in ("jsonl", "csv", "iso27560"):
        raise Problem(
            422,
            "format must be jsonl, csv or iso27560",
            code="validation",
            errors=[{"pointer": "/format", "detail": "jsonl | csv | iso27560"}],
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="{site.site_id}-events.{fmt}"',
            "Cache-Control": "no-store",
        }
    )
    # Set here: the request context adds it only after the headers have gone.
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    if request.method == "HEAD":
        # GET's headers without running the export: aiohttp sends whatever a streamed
        # answer writes, and a compressor's trailer, even to HEAD.
        if gzip:
            response.headers["Content-Encoding"] = "gzip"
        return response
    if gzip:
        response.enable_compression(web.ContentCoding.gzip)
    stream = PacedStream(request, response, request.app[SETTINGS].export_write_timeout_seconds)
    async with stream.guarded():
        # The headers go with the first chunk (PacedStream): the query has run by then,
        # and whatever failed before is still a problem answer.
        async with (
            request.app[LONG_READS].connection(site.site_id) as conn,
            # One snapshot, though the csv is read in several statements.
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            if fmt == "csv":
                await audit_store.export_csv(conn, where, stream.write)
            elif fmt == "iso27560":
                await write_iso27560(request, site, conn, where, stream.write)
            else:
                async with audit_store.export_lines(conn, where) as chunks:
                    async for lines in chunks:
                        await stream.write(("\n".join(lines) + "\n").encode("utf-8"))
        return await stream.finish()


async def subject_events(request: web.Request, ctx: SiteContext) -> web.Response:
    """Access request: a subject's full history as portable JSON."""
    site = ctx.site
    subject_id = subject_id_of(request)
    digest = subject_digest(site.subject_key, subject_id)
    where = ExportFilter(site.site_id, subject_digest=digest)
    events: list[dict[str, Any]] = []
    async with (
        request.app[LONG_READS].connection(site.site_id) as conn,
        conn.transaction(readonly=True),
    ):
        async with audit_store.export_lines(conn, where) as chunks:
            async for lines in chunks:
                events.extend(json.loads(line) for line in lines)
        erasures = await audit_store.erasure_lines(conn, site.site_id, digest)
    events.extend(json.loads(line) for line in erasures)  # after the records they erased
    return json_response({"site_id": site.site_id, "subject_id": subject_id, "events": events})


async def erase_subject(request: web.Request, ctx: SiteContext) -> web.Response:
    """Erasure: state row gone, subject id removed from the log, `erased` appended."""
    site = ctx.site
    subject_id = subject_id_of(request)
    digest = subject_digest(site.subject_key, subject_id)
    async with request.app[POOL].acquire() as conn:
        result = await audit_store.erase_subject(
            conn, site.site_id, subject_id, digest, datetime.now(UTC)
        )
    if result is None:
        raise Problem(404, "no record or state of this subject to erase", code="not-found")
    return json_response(
        {
            "site_id": site.site_id,
            "erased_events": result.events,
            "erased_record_seq": result.seq,
        }
    )


async def get_checkpoint(request: web.Request, ctx: SiteContext) -> web.Response:
    """A fresh signed checkpoint of the chain head."""
    site = ctx.site
    async with request.app[POOL].acquire() as conn:
        chain_head = await audit_store.select_chain_head(conn, site.site_id)
    seq, chain_hash = chain_head or (0, "0" * 64)
    body = request.app[SIGNER].sign_checkpoint(site.site_id, seq, chain_hash)
    body["tree"] = await tree_fields(request, site.site_id)  # the Merkle tree head
    return json_response(body)


async def list_checkpoints(request: web.Request, ctx: SiteContext) -> web.Response:
    """Stored checkpoints (periodic, and anchors left by retention purges)."""
    site = ctx.site
    async with request.app[POOL].acquire() as conn:
        found = await audit_store.select_checkpoints(conn, site.site_id)
    return json_response({"checkpoints": found})
