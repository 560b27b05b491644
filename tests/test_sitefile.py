"""Site TOML files and the demo sites of the five seed companies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cmp import sitefile
from cmp.store.db import connect
from cmp.store.migrate import migrate
from cmp.store.sites import select_policies, select_sites


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
    text = source.read_text("utf-8").replace("../texts/", str(source.parent.parent / "texts") + "/")
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
    text = source.read_text("utf-8").replace("../texts/", str(source.parent.parent / "texts") + "/")
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
