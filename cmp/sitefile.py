"""Site definitions as TOML files: `cmpd site apply FILE.toml` and the demo sites.

A file holds `site_id`, a `[site]` table (the body of PUT /v1/sites/{id}) and a
`[policy]` table (the body of POST …/policies; `policy_text_file` in a language's
texts names a file beside the site file: in its folder or below, no absolute path, no
`..`, no symlink out, a regular file of UTF-8 text of at most
POLICY_TEXT_FILE_MAX_BYTES). Applying an unchanged file publishes nothing; a changed
policy publishes a new version, material when the purposes or services changed or when
the file says `material = true`.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import asyncpg
from pydantic import ValidationError

from cmp.canonical import content_sha256
from cmp.models import POLICY_TEXT_MAX_CHARS, PolicyIn, PolicyVersion, SiteIn
from cmp.store import sites as site_store
from cmp.values import SITE_ID_RE

# The longest policy text the API takes, each character at its longest in UTF-8.
POLICY_TEXT_FILE_MAX_BYTES = 4 * POLICY_TEXT_MAX_CHARS
# Room for every language's (at most 20) longest policy text written inline.
SITE_FILE_MAX_BYTES = 16 * 1024 * 1024


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
        data = tomllib.loads(_read_text(path, SITE_FILE_MAX_BYTES, str(path)))
    except tomllib.TOMLDecodeError as exc:
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
            _inline_policy_texts(path, raw_policy)
            policy = PolicyIn.model_validate({**raw_policy, "material": bool(material)})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SiteFileError(f"{path}: {where}: {first['msg']}") from None
    rule_errors = site.jurisdiction_errors()
    if rule_errors:
        raise SiteFileError(f"{path}: site{rule_errors[0]['pointer']}: {rule_errors[0]['detail']}")
    if policy is not None:
        errors = policy.language_errors(site.languages)
        if errors:
            raise SiteFileError(f"{path}: policy{errors[0]['pointer']}: {errors[0]['detail']}")
    return SiteFile(site_id=site_id, site=site, policy=policy, material=material)


def _inline_policy_texts(path: Path, raw_policy: dict[str, Any]) -> None:
    """Replace each language's `policy_text_file` by the text of that file."""
    texts_by_lang = raw_policy.get("texts")
    if not isinstance(texts_by_lang, dict):
        return  # the model names what is wrong
    for lang, texts in texts_by_lang.items():
        if isinstance(texts, dict) and "policy_text_file" in texts:
            name = texts.pop("policy_text_file")
            label = f"{path}: policy.texts.{lang}.policy_text_file {name!r}"
            texts["policy_text"] = _read_text(
                _beside(path, name, label), POLICY_TEXT_FILE_MAX_BYTES, label
            )


def _beside(path: Path, name: object, label: str) -> Path:
    """`name` in the site file's folder or below it, never leading out of it."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise SiteFileError(f"{label}: must be a path relative to the site file")
    relative = PurePath(name)
    if relative.is_absolute():
        raise SiteFileError(f"{label}: an absolute path; the file must be beside the site file")
    if ".." in relative.parts:
        raise SiteFileError(f"{label}: '..' is not allowed; the file must be beside the site file")
    folder = path.parent.resolve()
    target = folder / relative
    if not target.resolve().is_relative_to(folder):
        raise SiteFileError(f"{label}: a symlink out of the site file's folder")
    return target


def _read_text(path: Path, limit: int, label: str) -> str:
    """A regular file of at most `limit` bytes of UTF-8 text."""
    try:
        # Non-blocking, so that opening a FIFO returns at once and is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SiteFileError(f"{label}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SiteFileError(f"{label}: not a regular file")
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise SiteFileError(f"{label}: {exc.strerror}") from None
    if len(data) > limit:
        raise SiteFileError(f"{label}: larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SiteFileError(f"{label}: not UTF-8 text (byte {exc.start})") from None


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
