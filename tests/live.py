"""A live cmp app on a real port, in a thread with its own event loop, for tests that
drive it synchronously (Hypothesis `given` and state machines)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from cmp.app import create_app
from cmp.config import Settings
from tests.factories import ADMIN_KEY


class Server:
    """The app on a real port, its own event loop in a thread."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.runner = web.AppRunner(app, access_log=None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. a database check) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def text(self, path: str, headers: dict[str, str] | None = None) -> str:
        """GET `path`, expecting 200; the body as text."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
            return str(r.read().decode("utf-8"))


def live_server(db_dsn: str, data_dir: Path) -> Server:
    """The app on the test database, rate limits out of the way."""
    cfg = Settings(
        database_url=SecretStr(db_dsn),
        data_dir=data_dir,
        admin_key=SecretStr(ADMIN_KEY),
        rate_per_second=10_000,
        rate_burst=10_000,
    )
    return Server(create_app(cfg, db_dsn))
