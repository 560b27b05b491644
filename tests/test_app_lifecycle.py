"""The app's lifetime: every resource opens on startup and closes on cleanup, and every
task the app started has ended by then (none left pending, none destroyed pending).

Warnings are errors in every test (pyproject.toml), so an unclosed pool or transport,
a ResourceWarning, fails here.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from cmp.app import create_app
from cmp.appkeys import CATALOG, LONG_READS, POOL
from cmp.background import background
from cmp.config import Settings
from tests.factories import ADMIN_KEY

JOBS = {"cmp-maintenance", "cmp-tree-integration", "cmp-key-use"}


def app_for(db_dsn: str, tmp_path: Path, **extra: Any) -> web.Application:
    settings = Settings(
        database_url=SecretStr(db_dsn),
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        **extra,
    )
    return create_app(settings, db_dsn)


async def test_stopping_the_app_ends_every_task_it_started(
    db_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_for(db_dsn, tmp_path)
    before = asyncio.all_tasks()
    runner = web.AppRunner(app)
    await runner.setup()
    started = asyncio.all_tasks() - before
    assert {t.get_name() for t in started} >= JOBS
    async with app[POOL].acquire() as conn:  # the pools are open and work
        assert await conn.fetchval("SELECT 1") == 1
    async with app[LONG_READS].connection("some-site") as conn:
        assert await conn.fetchval("SELECT 2") == 2
    listener = app[CATALOG]._listener
    assert listener is not None and not listener.is_closed()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await runner.cleanup()
        pending = [t.get_name() for t in started if not t.done()]
        assert pending == []
        assert all(t.cancelled() for t in started if t.get_name() in JOBS)
        assert listener.is_closed()
        assert app[POOL].is_closing()
        del started
        gc.collect()
    assert "Task was destroyed but it is pending" not in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_start_that_fails_closes_what_it_had_opened(db_dsn: str, tmp_path: Path) -> None:
    # The catalogue's LISTEN connection goes to the direct URL: nothing listens on port 1.
    closed = SecretStr("postgresql://cmp@127.0.0.1:1/cmp")
    app = app_for(db_dsn, tmp_path, database_direct_url=closed)
    before = asyncio.all_tasks()
    runner = web.AppRunner(app)
    with pytest.raises(OSError):
        await runner.setup()
    await runner.cleanup()
    assert app[POOL].is_closing()  # opened before the catalog, closed after it failed
    assert asyncio.all_tasks() - before == set()  # no job was started


async def test_a_background_job_has_ended_when_its_block_exits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tidied: list[str] = []

    async def job() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # a job that needs a moment to put things away
            tidied.append("done")

    async def broken() -> None:
        raise RuntimeError("the job failed")

    async with background(job(), "test-job"):
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "test-job"]
        await asyncio.sleep(0)  # the job starts
    assert task.cancelled() and tidied == ["done"]
    with caplog.at_level(logging.ERROR, logger="cmp.background"):
        async with background(broken(), "test-broken"):
            await asyncio.sleep(0)
    assert "background task test-broken had failed" in caplog.text


async def test_a_job_stuck_in_its_clean_up_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def job() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(3600)  # as a ROLLBACK on a connection gone dead

    async with background(job(), "test-stuck"):
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "test-stuck"]
        await asyncio.sleep(0)
    assert task.cancelled()

    deafness = [True]

    async def deaf() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not deafness:
                    raise  # a bug (it never ends) the test can still stop

    monkeypatch.setattr("cmp.background.GRACE_SECONDS", 0.01)
    with caplog.at_level(logging.ERROR, logger="cmp.background"):
        async with background(deaf(), "test-deaf"):
            (deaf_task,) = [t for t in asyncio.all_tasks() if t.get_name() == "test-deaf"]
            await asyncio.sleep(0)
    assert "background task test-deaf did not end after 5 cancellations" in caplog.text
    deafness.clear()
    deaf_task.cancel()
    await asyncio.wait([deaf_task])
    assert deaf_task.cancelled()
