"""Streamed answers (exports): headers with the first chunk, a minimum pace, and an
honest break when something fails after the first byte.

- The status line goes out only with the first chunk, so everything that can fail
  before it — the query itself included — is still an ordinary problem answer.
- Each chunk must be taken by the client within the write timeout
  (CMP_EXPORT_WRITE_TIMEOUT_SECONDS): a client that stops reading cannot keep a
  database connection and its transaction open for as long as it likes.
- After the first byte a failure can no longer become a status: the transfer is cut
  (the transport aborted, no terminating chunk), so the client sees a broken download,
  never a second status line inside a 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from cmp.appkeys import REQUEST_ID
from cmp.store.db import db_error_text

log = logging.getLogger("cmp.api")


class StreamAborted(Exception):
    """A streamed answer failed after its headers were sent; its transport is aborted.

    The request context answers with `response` itself: aiohttp then finds the
    connection gone and sends nothing more.
    """

    def __init__(self, response: web.StreamResponse, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


class SlowClient(Exception):
    """The client did not take a chunk within the write timeout."""


class PacedStream:
    def __init__(
        self, request: web.Request, response: web.StreamResponse, write_timeout: float
    ) -> None:
        self._request = request
        self._response = response
        self._timeout = write_timeout

    async def write(self, data: bytes) -> None:
        """Send `data` (the headers first, with the first chunk) within the write timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                if not self._response.prepared:
                    await self._response.prepare(self._request)
                await self._response.write(data)
        except TimeoutError:
            raise SlowClient(f"a chunk was not taken within {self._timeout:g} s") from None

    async def finish(self) -> web.StreamResponse:
        """End the answer (headers too, when nothing was written)."""
        try:
            async with asyncio.timeout(self._timeout):
                if not self._response.prepared:
                    await self._response.prepare(self._request)
                await self._response.write_eof()
        except TimeoutError:
            raise SlowClient(f"the end was not taken within {self._timeout:g} s") from None
        return self._response

    @contextlib.asynccontextmanager
    async def guarded(self) -> AsyncIterator[None]:
        """Errors before the first byte pass through; after it, they cut the transfer."""
        try:
            yield
        except Exception as exc:
            if not self._response.prepared:
                raise
            transport = self._request.transport
            if transport is not None:
                transport.abort()  # no flush: a client that does not read would stall it
            reason = str(exc) if isinstance(exc, SlowClient) else db_error_text(exc)
            # A client that stops reading or goes away is routine; anything else is not.
            routine = isinstance(exc, SlowClient | ConnectionError)
            log.log(
                logging.INFO if routine else logging.WARNING,
                "stream cut after its first byte: %s",
                reason,
                extra={"request_id": self._request.get(REQUEST_ID)},
            )
            raise StreamAborted(self._response, reason) from exc
