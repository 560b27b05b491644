"""Site TOML files and the demo sites of the five seed companies."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cmp import sitefile
from cmp.models import PolicyVersion
from cmp.store.db import connect
from cmp.store.migrate import migrate
from cmp.store.sites import select_policies, select_site, select_sites
from tests.factories import new_site_id


@pytest.fixture
async def conn(fresh_database: Any) -> Any:
    conn = await connect(await fresh_database())
    await migrate(conn)
    yield conn
    await conn.close()


async def test_demo_sites_load_with_their_seed_policies(conn: asyncpg.Connection) -> None:
    for path in sitefile.demo_files():
        await sitefile.apply(conn, sitefile.load(path))
    sites = {site.site_id: site for site in await select_sites(conn)}
    assert set(sites) == {"kundetelling", "cifero", "ditt-ekstralager", "smartwatt", "innfram"}
    assert sites["smartwatt"].languages == ["nb", "sv", "en"]
    for site in sites.values():  # opt-in everywhere (docs/jurisdictions.md)
        assert site.jurisdictions is not None and site.fallback == "eea"
        assert {r.model for r in site.jurisdictions} == {"opt_in"}
        assert "NO" in site.jurisdictions[0].countries
    innfram = await select_policies(conn, "innfram")
    assert [(p.version, p.material) for p in innfram] == [(1, True), (2, False)]
    assert "Org.nr 000000000" in (innfram[0].texts["nb"].policy_text or "")
    assert "Org.nr 926511890" in (innfram[1].texts["nb"].policy_text or "")
    kunde = (await select_policies(conn, "kundetelling"))[0]
    ga = next(s for p in kunde.purposes for s in p.services if s.key == "google-analytics")
    assert ga.retention_days == 730 and "_ga" in ga.cookies


async def test_applying_an_unchanged_file_publishes_nothing(conn: asyncpg.Connection) -> None:
    path = sitefile.demo_files()[0]
    first = await sitefile.apply(conn, sitefile.load(path))
    again = await sitefile.apply(conn, sitefile.load(path))
    assert first.site_created and first.published is not None
    assert not again.site_created and again.published is None


async def test_changed_wording_is_not_material_but_changed_purposes_are(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    source = sitefile.demo_files()[0]
    shutil.copytree(source.parent / "texts", tmp_path / "texts")
    text = source.read_text("utf-8")
    text = text.replace("material = true\n", "")  # let the content decide
    path = tmp_path / "site.toml"
    path.write_text(text, "utf-8")
    await sitefile.apply(conn, sitefile.load(path))
    path.write_text(text.replace('accept_all = "Godta alle"', 'accept_all = "Godta alt"'), "utf-8")
    reworded = await sitefile.apply(conn, sitefile.load(path))
    assert reworded.published is not None and reworded.published.material is False
    path.write_text(text.replace("retention_days = 730", "retention_days = 400"), "utf-8")
    changed = await sitefile.apply(conn, sitefile.load(path))
    assert changed.published is not None and changed.published.material is True


async def test_a_first_version_said_not_material_is_refused_and_nothing_applied(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    source = sitefile.demo_files()[0]
    shutil.copytree(source.parent / "texts", tmp_path / "texts")
    text = source.read_text("utf-8")
    path = tmp_path / "site.toml"
    path.write_text(text.replace("material = true\n", "material = false\n"), "utf-8")
    with pytest.raises(sitefile.SiteFileError, match="first policy version of a site must be"):
        await sitefile.apply(conn, sitefile.load(path))
    assert await select_sites(conn) == []  # the site went with it: one transaction


def test_a_bad_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'site_id = "ok-site"\n[site]\nname = "x"\nlanguages = ["nb"]\ndefault_language = "sv"\n',
        "utf-8",
    )
    with pytest.raises(sitefile.SiteFileError, match=r"bad\.toml"):
        sitefile.load(path)


async def test_loading_the_demo_twice_publishes_nothing_new(
    conn: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    from cmp.cli import load_demo

    await load_demo(conn)
    first = capsys.readouterr().out
    assert first.count("read key") == 5 and "innfram: published policy version 2" in first
    await load_demo(conn)
    assert capsys.readouterr().out == ""
    assert [p.version for p in await select_policies(conn, "innfram")] == [1, 2]


# --- policy_text_file: only a bounded UTF-8 regular file beside the site file ---------

SITE_TOML = """site_id = "{site_id}"
[site]
name = "Text file shop"
languages = ["en"]
default_language = "en"
[policy]
policy_url = "https://shop.example/privacy"
[[policy.purposes]]
key = "necessary"
required = true
consent_mode = ["security_storage"]
title.en = "Necessary"
[policy.texts.en]
title = "Cookies"
body = "We use cookies."
accept_all = "Accept all"
reject_all = "Reject all"
settings = "Settings"
save = "Save"
policy_text_file = {text_file}
"""


def _site_apply(site: Path, db_dsn: str) -> subprocess.CompletedProcess[str]:
    """`cmpd site apply SITE` in a process of its own, its memory capped so that a read
    without bound fails fast instead of filling the machine."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "CMP_DATABASE_URL": db_dsn, "CMP_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "cmp", "site", "apply", str(site)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap_memory,
    )


def _outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "signing-key.pem"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nsecret\n", "utf-8")
    return secret


def _absolute(folder: Path) -> str:
    return str(_outside_secret(folder.parent))


def _dot_dot(folder: Path) -> str:
    _outside_secret(folder.parent)
    return "../signing-key.pem"


def _symlink_out(folder: Path) -> str:
    (folder / "policy.txt").symlink_to(_outside_secret(folder.parent))
    return "policy.txt"


def _symlink_to_dev_zero(folder: Path) -> str:
    (folder / "policy.txt").symlink_to("/dev/zero")
    return "policy.txt"


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "policy.txt")
    return "policy.txt"


def _oversize(folder: Path) -> str:
    with (folder / "policy.txt").open("wb") as file:
        file.truncate(4 << 30)  # sparse: takes no disk, but a whole read takes 4 GiB
    return "policy.txt"


def _not_utf8(folder: Path) -> str:
    (folder / "policy.txt").write_bytes("Personvernerklæring".encode("latin-1"))
    return "policy.txt"


@pytest.mark.parametrize(
    ("make_file", "reason"),
    [
        (_absolute, "an absolute path"),
        (_dot_dot, "'..' is not allowed"),
        (_symlink_out, "a symlink out of the site file's folder"),
        (_symlink_to_dev_zero, "a symlink out of the site file's folder"),
        (_fifo, "not a regular file"),
        (_oversize, f"larger than {sitefile.POLICY_TEXT_FILE_MAX_BYTES} bytes"),
        (_not_utf8, "not UTF-8 text"),
    ],
    ids=lambda v: getattr(v, "__name__", "").lstrip("_") or None,
)
def test_site_apply_refuses_a_policy_text_file_not_beside_it_in_one_line_publishing_nothing(
    make_file: Callable[[Path], str], reason: str, db_dsn: str, tmp_path: Path
) -> None:
    folder = tmp_path / "sites"
    folder.mkdir()
    site_id = new_site_id()
    site = folder / "site.toml"
    site.write_text(
        SITE_TOML.format(site_id=site_id, text_file=json.dumps(make_file(folder))), "utf-8"
    )
    done = _site_apply(site, db_dsn)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1, done.stderr[-2000:]
    assert "policy.texts.en.policy_text_file" in done.stderr and reason in done.stderr
    assert done.stdout == ""
    assert asyncio.run(_policies(db_dsn, site_id)) == (None, [])


def test_site_apply_reads_a_policy_text_file_in_a_folder_below_it(
    db_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "en.txt").write_text("Personvernerklæring – full text\n", "utf-8")
    site_id = new_site_id()
    site = tmp_path / "site.toml"
    site.write_text(SITE_TOML.format(site_id=site_id, text_file='"texts/en.txt"'), "utf-8")
    done = _site_apply(site, db_dsn)
    assert done.returncode == 0, done.stderr
    _, policies = asyncio.run(_policies(db_dsn, site_id))
    assert [p.texts["en"].policy_text for p in policies] == ["Personvernerklæring – full text\n"]


async def _policies(dsn: str, site_id: str) -> tuple[Any, list[PolicyVersion]]:
    conn = await connect(dsn)
    try:
        return await select_site(conn, site_id), await select_policies(conn, site_id)
    finally:
        await conn.close()


def test_site_apply_refuses_a_site_file_that_is_not_a_regular_file(db_dsn: str) -> None:
    done = _site_apply(Path("/dev/zero"), db_dsn)
    assert done.returncode == 2 and done.stderr == "cmpd: /dev/zero: not a regular file\n"


def test_a_site_file_with_ambiguous_rules_names_the_pointer(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'site_id = "rules"\n[site]\nname = "x"\nlanguages = ["en"]\ndefault_language = "en"\n'
        '[[site.jurisdictions]]\nid = "a"\ncountries = ["NO"]\nmodel = "opt_in"\n'
    )
    with pytest.raises(sitefile.SiteFileError) as caught:
        sitefile.load(path)
    assert str(caught.value) == (
        f"{path}: site/jurisdictions: exactly one rule must be the default (found 0)"
    )


def test_a_rule_in_a_site_file_may_switch_sharing_off(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    head = 'site_id = "rules"\n[site]\nname = "x"\nlanguages = ["en"]\ndefault_language = "en"\n'
    rules = (
        '[[site.jurisdictions]]\nid = "de"\ncountries = ["DE"]\nmodel = "opt_in"\n'
        "share_across_devices = {}\n"
        '[[site.jurisdictions]]\nid = "rest"\nmodel = "opt_in"\ndefault = true\n'
    )
    path.write_text(head + rules.format("false"))
    loaded = sitefile.load(path).site.jurisdictions
    assert loaded is not None
    assert [r.share_across_devices for r in loaded] == [False, None]
    path.write_text(head + rules.format('"no"'))
    with pytest.raises(sitefile.SiteFileError) as caught:
        sitefile.load(path)
    assert str(caught.value) == (
        f"{path}: jurisdictions.0.share_across_devices: Input should be a valid boolean"
    )


NOTICE_TOML = """
[policy.notice_texts.opt_out.nb]
title = "Dine valg"
body = "Du kan reservere deg mot salg og deling når som helst."
"""


async def test_a_site_file_words_its_notices_in_every_language(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    source = sitefile.demo_files()[0]
    shutil.copytree(source.parent / "texts", tmp_path / "texts")
    text = source.read_text("utf-8").replace("material = true\n", "")
    path = tmp_path / "site.toml"
    path.write_text(text, "utf-8")
    await sitefile.apply(conn, sitefile.load(path))
    path.write_text(text + NOTICE_TOML, "utf-8")
    with pytest.raises(sitefile.SiteFileError) as caught:
        sitefile.load(path)
    assert str(caught.value) == (
        f"{path}: policy/notice_texts/opt_out/en: opt_out notice texts for 'en' missing"
    )
    english = NOTICE_TOML.replace(".nb]", ".en]").replace("Dine valg", "Your choices")
    english = english.replace("Du kan reservere deg mot salg og deling", "You may opt out")
    path.write_text(text + NOTICE_TOML + english, "utf-8")
    worded = await sitefile.apply(conn, sitefile.load(path))
    assert worded.published is not None and worded.published.material is False
    assert worded.published.notice("opt_out")["nb"].title == "Dine valg"
    assert (await sitefile.apply(conn, sitefile.load(path))).published is None
