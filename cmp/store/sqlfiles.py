"""Locate and load the plain-SQL files: migrations, live function definitions and
`-- name:` queries.

The SQL lives in `sql/` at the top of the checkout and is installed as the package
`cmp.sql`, so a `pip install .` outside the checkout finds it too.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def sql_root() -> Path:
    return Path(str(resources.files("cmp.sql")))


def migration_files() -> list[tuple[int, str, Path]]:
    """(number, name, path) of every `schema/NNNN_name.sql`, in order."""
    found = []
    for path in sorted((sql_root() / "schema").glob("[0-9][0-9][0-9][0-9]_*.sql")):
        number = int(path.name[:4])
        found.append((number, path.stem, path))
    return found


def function_files() -> list[Path]:
    """Every `functions/*.sql`: the one live definition of each SQL function, applied
    after the migrations whenever its text changed (Flyway's repeatable migrations)."""
    return sorted((sql_root() / "functions").glob("*.sql"))


@cache
def queries(aggregate: str) -> dict[str, str]:
    """The named queries of `queries/<aggregate>.sql` (`-- name: verb_noun` headers)."""
    text = (sql_root() / "queries" / f"{aggregate}.sql").read_text("utf-8")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        named[name] = body.strip()
    return named
