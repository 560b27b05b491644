"""Site definitions as TOML files: `cmpd site apply FILE.toml` and the demo sites.

A file holds `site_id`, a `[site]` table (the body of PUT /v1/sites/{id}) and a
`[policy]` table (the body of POST …/policies; `policy_text_file` in a language's
texts is read from a path relative to the file). Applying an unchanged file publishes
nothing; a changed policy publishes a new version, material when the purposes or
services changed or when the file says `material = true`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from cmp.canonical import content_sha256
from cmp.models import PolicyIn, PolicyVersion, SiteIn
from cmp.store import sites as site_store
from cmp.values import SITE_ID_RE


class SiteFileError(Exception):
    """A site file that cannot be applied; the message names the file and the field."""


@dataclass(frozen=True)
class SiteFile:
    site_id: str
    site: SiteIn
    policy: PolicyIn | None
    material: bool | None  # None: decide from the content


@dataclass(frozen=True)
class Applied:
    site_id: str
    site_created: bool
    published: PolicyVersion | None


def load(path: Path) -> SiteFile:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SiteFileError(f"{path}: {exc}") from None
    site_id = data.get("site_id")
    if not isinstance(site_id, str) or not SITE_ID_RE.fullmatch(site_id):
        raise SiteFileError(f"{path}: site_id must match ^[a-z0-9][a-z0-9-]{{1,62}}$")
    try:
        site = SiteIn.model_validate(data.get("site", {}))
        raw_policy: dict[str, Any] | None = data.get("policy")
        material = None
        policy = None
        if raw_policy is not None:
            material = raw_policy.pop("material", None)
            for texts in raw_policy.get("texts", {}).values():
                file = texts.pop("policy_text_file", None)
                if file is not None:
                    texts["policy_text"] = (path.parent / file).read_text("utf-8")
            policy = PolicyIn.model_validate({**raw_policy, "material": bool(material)})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SiteFileError(f"{path}: {where}: {first['msg']}") from None
    except OSError as exc:
        raise SiteFileError(f"{path}: {exc}") from None
    if policy is not None:
        errors = policy.language_errors(site.languages)
        if errors:
            raise SiteFileError(f"{path}: policy{errors[0]['pointer']}: {errors[0]['detail']}")
    return SiteFile(site_id=site_id, site=site, policy=policy, material=material)


async def apply(conn: asyncpg.Connection, sitefile: SiteFile) -> Applied:
    """Upsert the site and publish its policy when it differs from the current version."""
    async with conn.transaction():
        _, created = await site_store.upsert_site(conn, sitefile.site_id, sitefile.site)
        published = None
        if sitefile.policy is not None:
            published = await _publish_if_changed(conn, sitefile)
        return Applied(sitefile.site_id, created, published)


async def _publish_if_changed(conn: asyncpg.Connection, sitefile: SiteFile) -> PolicyVersion | None:
    assert sitefile.policy is not None
    current = await site_store.select_current_policy(conn, sitefile.site_id)
    if current is not None and current.content_sha256 == content_sha256(sitefile.policy.document()):
        return None
    material = sitefile.material
    if material is None:
        # Material when what is asked changed; a first version changes it from nothing.
        before = _substance(current) if current is not None else None
        material = before != sitefile.policy.substance()
    body = sitefile.policy.model_copy(update={"material": material})
    try:
        return await site_store.publish_policy(conn, sitefile.site_id, body)
    except site_store.FirstVersionNotMaterial as exc:
        raise SiteFileError(f"{exc} (policy.material = false)") from None


def _substance(policy: PolicyVersion) -> list[object]:
    """What consent is given to in a published version (`PolicyIn.substance`)."""
    content = policy.model_dump(include={"policy_url", "purposes", "texts"})
    return PolicyIn.model_validate({**content, "material": True}).substance()


def demo_files() -> list[Path]:
    return sorted((Path(__file__).parent / "demo" / "sites").glob("*.toml"))
