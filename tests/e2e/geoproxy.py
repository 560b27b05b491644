"""Debian's nginx in front of the e2e cmp server, setting the visitor's location headers
as a CDN does (`proxy_set_header CF-IPCountry NO;`): the only way a location reaches
cmp, which believes it only from CMP_TRUSTED_PROXIES (127.0.0.1/32 in these tests, so
the browser talks to nginx and nginx to cmp)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

import aiohttp

from loadtest.cluster import free_port

COUNTRY_HEADER = "CF-IPCountry"
REGION_HEADER = "CF-Region-Code"
START_TIMEOUT = 20.0


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


def geo_conf(prefix: Path, port: int, upstream: int, headers: dict[str, str]) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    sets = "\n".join(f"            proxy_set_header {k} {v};" for k, v in headers.items())
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
{sets}
            proxy_buffering off;
        }}
    }}
}}
"""


class GeoProxy:
    """One nginx process that tells cmp every visitor is at `headers`' location."""

    def __init__(self, root: Path, upstream: int, headers: dict[str, str]) -> None:
        self.root = root
        self.upstream = upstream
        self.headers = headers
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        binary = nginx_binary()
        assert binary is not None
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.root / "nginx.conf"
        conf.write_text(geo_conf(self.root, self.port, self.upstream, self.headers))
        self.proc = self._launch([binary, "-p", str(self.root), "-c", str(conf), "-e", "stderr"])
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    text = (self.root / "nginx.log").read_text(errors="replace")
                    raise RuntimeError("nginx did not start:\n" + text)
                await asyncio.sleep(0.1)

    def _launch(self, argv: list[str]) -> subprocess.Popen[bytes]:
        self._log = (self.root / "nginx.log").open("ab")
        return subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
