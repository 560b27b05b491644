"""Demo pages, only with `cmpd serve --demo`: `GET /demo/{site_id}` (404 otherwise).

A pretend page of a demo site that loads its `banner.js`, carries a fake Google
Analytics tag gated on `statistics`, a "Cookie settings" link and a live panel of what
the banner exposes (`window.cmp.getConsent()` and the dataLayer). No read key ever goes
into a page, so the panel shows the browser's side only. The page is served under a
strict nonce CSP on purpose: it shows that the banner works there too. The demo site
files list `http://127.0.0.1:8080` and `http://localhost:8080` as origins, so the
banner's events are accepted when the demo runs on the default port.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib import resources
from string import Template

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.html import fill
from cmp.api.problems import Problem
from cmp.appkeys import CATALOG, SETTINGS

WORDS: dict[str, dict[str, str]] = {
    "nb": {
        "title": "Demo: {name}",
        "intro": "En demoside for {name}. Banneret kommer fra cmp; valget ditt lagres i "
        "samtykkeloggen. Den falske Google Analytics-taggen kjører bare etter "
        "samtykke til statistikk.",
        "ga_label": "Google Analytics (falsk)",
        "yes": "lastet",
        "no": "ikke lastet",
        "state_heading": "Samtykke i nettleseren (window.cmp.getConsent())",
        "settings_link": "Innstillinger for informasjonskapsler",
        "policy_label": "Personvernerklæring",
    },
    "sv": {
        "title": "Demo: {name}",
        "intro": "En demosida för {name}. Bannern kommer från cmp; ditt val sparas i "
        "samtyckesloggen. Den falska Google Analytics-taggen körs bara efter "
        "samtycke till statistik.",
        "ga_label": "Google Analytics (falsk)",
        "yes": "laddad",
        "no": "inte laddad",
        "state_heading": "Samtycke i webbläsaren (window.cmp.getConsent())",
        "settings_link": "Inställningar för kakor",
        "policy_label": "Integritetspolicy",
    },
    "en": {
        "title": "Demo: {name}",
        "intro": "A demo page for {name}. The banner comes from cmp; your choice is stored "
        "in the consent log. The fake Google Analytics tag runs only after consent "
        "to statistics.",
        "ga_label": "Google Analytics (fake)",
        "yes": "loaded",
        "no": "not loaded",
        "state_heading": "Consent in the browser (window.cmp.getConsent())",
        "settings_link": "Cookie settings",
        "policy_label": "Privacy policy",
    },
}
NORWEGIAN = {"nb", "no", "nn"}


@cache
def page_template() -> Template:
    return Template((resources.files("cmp") / "static" / "demo.html").read_text(encoding="utf-8"))


def words_for(lang: str) -> dict[str, str]:
    primary = lang.split("-")[0].lower()
    return WORDS.get("nb" if primary in NORWEGIAN else primary, WORDS["en"])


def csp(nonce: str) -> str:
    return (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; object-src 'none'"
    )


async def get_demo(request: web.Request, ctx: SiteContext) -> web.Response:
    if not request.app[SETTINGS].demo:
        # Decided per request rather than by registration: the route table stays one
        # static list (and the OpenAPI document with it) whatever the mode.
        raise Problem(404, "no such resource", code="not-found")
    site = ctx.site
    site_id = site.site_id
    policy = await request.app[CATALOG].current_policy(site_id)
    if policy is None:
        raise Problem(404, "this site has no published policy yet", code="no-policy")
    lang = site.default_language
    words = {k: v.format(name=site.name) for k, v in words_for(lang).items()}
    nonce = secrets.token_urlsafe(18)
    html = fill(
        page_template(),
        lang=lang,
        nonce=nonce,
        banner_src=f"/v1/sites/{site_id}/banner.js",
        policy_url=policy.policy_url,
        heading=words["title"],
        **words,
    )
    return web.Response(
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": csp(nonce), "Cache-Control": "no-store"},
    )
