"""`GET /v1/sites/{site_id}/banner.js`: the product's own consent banner (docs/banner.md).

The script is one static file (`cmp/static/banner.js`, read once) with a placeholder that
is replaced by the site's configuration, built from the catalogue: languages, validity,
the current and newest material policy version, purposes, services, texts and variants,
the notice texts of the visitor's model, and the visitor's jurisdiction rule with every
rule's Consent Mode region list. The privacy-policy text itself stays out: it can be
hundreds of KiB and the banner only links to it. The body is cacheable: a strong ETag
(hash of the final body), five minutes of `max-age` so a new material version reaches
visitors quickly, 304 on a match. A site with rules gets one body per rule, so its answer
is `private` (a shared cache would hand one visitor's rule to the next) and varies on the
location headers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from cmp.api.access import SiteContext
from cmp.api.collect import visitor_location
from cmp.api.problems import Problem
from cmp.appkeys import CATALOG, SETTINGS
from cmp.jurisdiction import Rule, Rules, site_rules
from cmp.models import PolicyVersion, Site, Texts
from cmp.store.sites import StoredSite

PLACEHOLDER = "/*CMP_CONFIG*/null"
CACHE_CONTROL = "public, max-age=300"
CACHE_CONTROL_PER_RULE = "private, max-age=300"
RENDERED_MAX = 512


@cache
def template() -> str:
    """The static script, read once per process."""
    text = (resources.files("cmp") / "static" / "banner.js").read_text(encoding="utf-8")
    if text.count(PLACEHOLDER) != 1:
        raise RuntimeError(f"banner.js must contain {PLACEHOLDER} exactly once")
    return text


def shown_texts(texts: dict[str, Texts]) -> dict[str, Any]:
    return {lang: t.model_dump(mode="json", exclude={"policy_text"}) for lang, t in texts.items()}


def banner_config(
    site: Site, policy: PolicyVersion, material_version: int, rules: Rules, rule: Rule
) -> dict[str, Any]:
    """What the script needs to show the banner and gate tags; no secrets, no policy text."""
    return {
        "site_id": site.site_id,
        "languages": site.languages,
        "default_language": site.default_language,
        "consent_validity_days": site.consent_validity_days,
        "policy_version": policy.version,
        "material_version": material_version,
        "policy_url": policy.policy_url,
        # Shown beside the policy link when set (ISO/IEC TS 27560 site fields).
        "controller": ", ".join(x for x in (site.controller_name, site.controller_contact) if x)
        or None,
        "withdrawal_url": site.withdrawal_url,
        "purposes": [
            {
                "key": p.key,
                "required": p.required,
                "gpc": p.gpc,
                "consent_mode": list(p.consent_mode),
                "title": p.title,
                "description": p.description,
                "services": [
                    {
                        "key": s.key,
                        "name": s.name,
                        "cookies": s.cookies,
                        "retention_days": s.retention_days,
                        "description": s.description,
                    }
                    for s in p.services
                ],
            }
            for p in policy.purposes
        ],
        "texts": shown_texts(policy.texts),
        # Each subject sees one variant's texts (cmp/variants.py, `variantOf` in the script).
        "variants": {
            name: {"weight": v.weight, "texts": shown_texts(v.texts)}
            for name, v in (policy.variants or {}).items()
        }
        or None,
        # Under a granting model the first layer is a notice: its own title and body when
        # the policy words one for the model, else the banner's built-in wording.
        "notice": {lang: t.model_dump(mode="json") for lang, t in policy.notice(rule.model).items()}
        or None,
        # The visitor's rule decides how the banner behaves; every rule's codes become a
        # Consent Mode `region` default, for Google's own location of the visitor.
        "rule": {"id": rule.id, "model": rule.model},
        "regions": [
            [[*r.countries, *r.regions], r.model] for r in rules.rules if r.countries or r.regions
        ],
    }


def script_json(data: Any) -> str:
    """JSON that is also safe inside a <script> element and in any JavaScript engine.

    `<` only occurs inside strings, where `\\u003c` means the same: no `</script>` or
    `<!--` can end or confuse an inline copy. U+2028/2029 are legal in JSON strings but
    were line terminators in JavaScript string literals before ES2019.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    gzipped: bytes
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'

    @property
    def gzip_etag(self) -> str:
        # Another representation, so another strong validator (as RFC 9110 asks).
        return f'"{self.digest}-gzip"'


def render(config: dict[str, Any]) -> Rendered:
    body = template().replace(PLACEHOLDER, script_json(config)).encode("utf-8")
    return Rendered(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        digest=hashlib.sha256(body).hexdigest()[:32],
    )


# Rendering (JSON, hash, gzip) costs more than the rest of the request (loadtest/README.md);
# the result depends only on the site row and its policy versions, which are all in the
# key, so an entry can never be stale (a changed site has a new updated_at, a new policy
# a new version).
_rendered: OrderedDict[tuple[str, datetime, int, int, str], Rendered] = OrderedDict()


async def rendered_banner(request: web.Request, site: StoredSite) -> Rendered:
    catalog = request.app[CATALOG]
    site_id = site.site_id
    current, material = await catalog.policy_versions(site_id)
    rules = site_rules(site)
    rule = rules.match(visitor_location(request)) if site.jurisdictions else rules.default
    key = (site_id, site.updated_at, current, material, rule.id)
    found = _rendered.get(key)
    if found is not None:
        _rendered.move_to_end(key)
        return found
    policy = await catalog.policy(site_id, current) if current else None
    if policy is None:
        raise Problem(404, "this site has no published policy yet", code="no-policy")
    found = render(banner_config(site, policy, material, rules, rule))
    _rendered[key] = found
    if len(_rendered) > RENDERED_MAX:
        _rendered.popitem(last=False)
    return found


def accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().removeprefix("q=").strip()
            return q == "" or _q_value(q) > 0
    return False


def _q_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0


def not_modified(request: web.Request, rendered: Rendered) -> bool:
    """Either representation's tag matches."""
    return matches_etag(request, {rendered.etag, rendered.gzip_etag})


def matches_etag(request: web.Request, etags: set[str]) -> bool:
    """Whether If-None-Match names one of `etags` (the weak comparison) or is `*`."""
    header = request.headers.get("If-None-Match", "")
    tags = {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
    return "*" in tags or bool(tags & etags)


async def get_banner(request: web.Request, ctx: SiteContext) -> web.Response:
    rendered = await rendered_banner(request, ctx.site)
    compressed = accepts_gzip(request)
    headers = {
        "ETag": rendered.gzip_etag if compressed else rendered.etag,
        "X-Content-Type-Options": "nosniff",
        **per_rule_caching(request, ctx.site),
    }
    if not_modified(request, rendered):
        return web.Response(status=304, headers=headers)
    if compressed:
        headers["Content-Encoding"] = "gzip"
    return web.Response(
        body=rendered.gzipped if compressed else rendered.body,
        content_type="application/javascript",
        charset="utf-8",
        headers=headers,
    )


def per_rule_caching(request: web.Request, site: Site) -> dict[str, str]:
    """Cache headers of a document built per rule: private and varying on the location
    headers when the site has rules (one body per rule), public otherwise."""
    if not site.jurisdictions:
        return {"Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
    settings = request.app[SETTINGS]
    geo = [h for h in (settings.geo_country_header, settings.geo_region_header) if h]
    return {"Cache-Control": CACHE_CONTROL_PER_RULE, "Vary": ", ".join(["Accept-Encoding", *geo])}
