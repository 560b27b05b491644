"""An in-process TCP proxy between the app and PostgreSQL that misbehaves on demand.

The app connects to 127.0.0.1:<port>; each connection is forwarded to the server's
unix socket. On demand the proxy

- pauses: holds every byte in both directions until `resume` (a network stall; what
  was held is then delivered, as TCP would after a retransmission);
- blackholes: every open connection, and every new one until `heal`, silently drops
  what it carries, for good (a path that lost its state: neither end hears a thing,
  not even a close);
- resets: aborts every open connection with a TCP RST.

No such tool is installable here (toxiproxy, tc netem need more than a package), and
in-process it is deterministic: a fault takes effect on the next byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    dead: bool
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: Path) -> None:
        self._upstream = str(upstream)
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._blackhole = False
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        # Blackholed connections the app closed: it gave up on them, not waiting on.
        self.dead_closed_by_app = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def dsn(self, dsn: str) -> str:
        """`dsn` (a unix-socket DSN of the upstream server) pointed at the proxy."""
        parts = urlsplit(dsn)
        user = parts.username or "postgres"
        return urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", parts.path, "", ""))

    # --- faults --------------------------------------------------------------------

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def blackhole(self) -> None:
        self._blackhole = True
        for link in self._links:
            link.dead = True

    def heal(self) -> None:
        """New connections pass again; the blackholed ones stay dead."""
        self._blackhole = False

    def reset(self) -> int:
        """Abort every open connection with an RST; returns how many."""
        links = list(self._links)
        for link in links:
            self._abort(link)
        return len(links)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        for link in list(self._links):
            self._abort(link)
        if self._server is not None:
            await self._server.wait_closed()

    # --- forwarding ----------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self._upstream)
        except OSError:
            writer.transport.abort()  # as a refused connection would look to the app
            return
        link = _Link(writer, up_writer, dead=self._blackhole)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, from_app=True)),
            asyncio.create_task(self._pump(up_reader, writer, link, from_app=False)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        from_app: bool,
    ) -> None:
        while True:
            data = await source.read(65536)
            await self._flowing.wait()
            if link.dead:
                if not data:
                    self.dead_closed_by_app += from_app
                    await asyncio.Event().wait()  # a blackhole does not carry the close either
                continue
            if not data:
                # One end closed: close the other, the whole link goes.
                self._abort(link)
                return
            sink.write(data)
            await sink.drain()

    def _abort(self, link: _Link) -> None:
        sock = link.client.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close sends an RST instead of a FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        link.client.transport.abort()
        link.server.transport.abort()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
