"""What the e2e tests drive: the page origin (a second site serving test pages), a real
cmp server that can stop and start on one port, a test site, and the reads that check
the server's side (consent state, stored events).

Plain classes and functions; the fixtures that build them live in conftest.py.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cmp.app import create_app
from cmp.config import Settings
from tests.e2e.pageutil import Browsing
from tests.e2e.policy import LANGS, e2e_policy
from tests.factories import ADMIN, ROOT, make_key, new_site_id

if TYPE_CHECKING:
    from playwright.async_api import Page

ARTIFACTS = ROOT / "tests" / "artifacts"
NONCE = "e2e-n0nce-4f9a"

EXTERNAL_TAG = "window.extRuns = (window.extRuns || 0) + 1;\n"


class Pages:
    """A tiny second origin: serves registered HTML pages and one external 'analytics' tag."""

    def __init__(self) -> None:
        self.origin = ""
        self._pages: dict[str, tuple[str, dict[str, str]]] = {}

    def add(self, html: str, headers: dict[str, str] | None = None) -> str:
        name = secrets.token_hex(6)
        self._pages[name] = (html, headers or {})
        return f"{self.origin}/p/{name}"

    async def page(self, request: web.Request) -> web.Response:
        found = self._pages.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        html, headers = found
        return web.Response(text=html, content_type="text/html", headers=headers)

    async def tag(self, request: web.Request) -> web.Response:
        return web.Response(text=EXTERNAL_TAG, content_type="application/javascript")


def page_html(api: str, site_id: str, lang: str = "nb", *, nonce: str | None = None) -> str:
    """A customer page: banner first in <head>, gated tags (inline and external), a
    'Cookie settings' link and a plain link before it (to see where focus goes)."""
    n = f' nonce="{nonce}"' if nonce else ""
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Shop</title>
<script{n}>
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {{
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
}});
</script>
<script src="{api}/v1/sites/{site_id}/banner.js"{n}></script>
<script type="text/plain" data-cmp-purpose="statistics"{n}>
window.statsRuns = (window.statsRuns || 0) + 1;
</script>
<script type="text/plain" data-cmp-purpose="statistics" src="/ext-tag.js"{n}></script>
<script type="text/plain" data-cmp-purpose="marketing"{n}>
window.marketingRuns = (window.marketingRuns || 0) + 1;
</script>
</head><body>
<h1>Nettbutikk</h1>
<p><a href="#top" id="home">Hjem</a></p>
<p><a href="#" id="settings-link" data-cmp-open>Cookie settings</a></p>
</body></html>"""


class CmpServer:
    """A real cmp server on 127.0.0.1; can be stopped and started again on the same port."""

    def __init__(self, settings: Settings, dsn: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.port: int | None = None
        self._client: TestClient | None = None

    @property
    def client(self) -> TestClient:
        assert self._client is not None, "server is stopped"
        return self._client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = TestServer(create_app(self.settings, self.dsn), host="127.0.0.1", port=self.port)
        self._client = TestClient(server)
        await self._client.start_server()
        self.port = server.port

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


@dataclass
class E2ESite:
    id: str
    read: dict[str, str]
    policy: dict[str, Any] = field(default_factory=e2e_policy)

    @property
    def texts(self) -> dict[str, dict[str, str]]:
        return self.policy["texts"]  # type: ignore[no-any-return]


async def make_e2e_site(cmp: CmpServer, origin: str, **site: Any) -> E2ESite:
    site_id = new_site_id()
    body = {
        "name": "Nettbutikk AS",
        "origins": [origin],
        "languages": list(LANGS),
        "default_language": "nb",
        "consent_validity_days": 365,
        **site,
    }
    r = await cmp.client.put(f"/v1/sites/{site_id}", json=body, headers=ADMIN)
    assert r.status == 201, await r.text()
    await publish(cmp, site_id, material=True)
    return E2ESite(id=site_id, read=await make_key(cmp.client, site_id, "read"))


async def publish(cmp: CmpServer, site_id: str, *, material: bool) -> int:
    r = await cmp.client.post(
        f"/v1/sites/{site_id}/policies", json=e2e_policy(material), headers=ADMIN
    )
    assert r.status == 201, await r.text()
    return int((await r.json())["version"])


async def state(cmp: CmpServer, site: E2ESite, subject_id: str) -> dict[str, Any]:
    r = await cmp.client.get(
        f"/v1/sites/{site.id}/subjects/{subject_id}/consent", headers=site.read
    )
    assert r.status == 200, await r.text()
    return await r.json()  # type: ignore[no-any-return]


async def stored_events(db_dsn: str, site_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id::text, subject_id, policy_version, action, purposes::text "
            "FROM consent_events WHERE site_id = $1 ORDER BY seq",
            site_id,
        )
    finally:
        await conn.close()
    return [{**dict(r), "purposes": json.loads(r["purposes"])} for r in rows]


async def open_site_page(
    browsing: Browsing,
    pages: Pages,
    cmp: CmpServer,
    site: E2ESite,
    lang: str = "nb",
    *,
    nonce: str | None = None,
    headers: dict[str, str] | None = None,
) -> Page:
    return await browsing.visit(pages.add(page_html(cmp.url, site.id, lang, nonce=nonce), headers))
