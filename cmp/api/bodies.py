"""A response that lets go of its body once it is written.

aiohttp's loop for a keep-alive connection keeps that connection's last request and
response until the next request comes (`RequestHandler.start`), so every idle connection
would hold its last body: after a burst of 100-id lookups, one answer per connection
(loadtest/README.md has the figures). Answers whose body may be large use this class.
Small fixed answers and bodies shared from a cache do not need it.
"""

from __future__ import annotations

from aiohttp import web


class Response(web.Response):
    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        self.body = None  # sent; `body_length` still says how long it was
