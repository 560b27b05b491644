"""The repository stands on its own: no file reaches for a folder beside the checkout,
and no reference points to a specification readers of the repository do not have."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tests.factories import ROOT

FOLDERS = ("cmp", "tests", "loadtest", "deploy", "docs", "sql", "tools", ".ci")
TOP_FILES = ("README.md", "Makefile", "pyproject.toml")
# Made by the set-up or the tests, not part of the repository (.gitignore).
GENERATED = {"node_modules", "__pycache__", "artifacts", ".pytest_cache", ".mypy_cache"}
# A folder named shared beside the checkout: reached relatively (two dots, a slash), by
# its absolute path, or as a path component in a string.
OUTSIDE = re.compile(r"\.\./+shared\b|/work/shared\b|[\"']shared/?[\"']|[\"']shared/[\w.-]")
# Section numbers of a specification that is not in the repository.
SPEC_SECTION = re.compile(r"\bSPEC\s*§")


def repository_texts() -> Iterator[tuple[str, str]]:
    paths = [ROOT / name for name in TOP_FILES]
    for folder in FOLDERS:
        paths += sorted(
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and not GENERATED & set(p.relative_to(ROOT).parts)
        )
    for path in paths:
        if path == Path(__file__).resolve():
            continue  # names the patterns it looks for
        try:
            yield path.relative_to(ROOT).as_posix(), path.read_text("utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary files say nothing about paths


def offending(pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}"
        for name, text in repository_texts()
        for match in pattern.finditer(text)
    ]


def test_no_file_refers_to_a_shared_folder_outside_the_repository() -> None:
    assert offending(OUTSIDE) == []


def test_no_file_cites_the_specification_outside_the_repository() -> None:
    assert offending(SPEC_SECTION) == []


def test_the_captured_client_requests_are_in_the_repository() -> None:
    assert (ROOT / "tests" / "fixtures" / "clients" / "captured-requests.jsonl").is_file()
