"""Data files that pinned dependencies ship, read without importing the package.

pycountry and crawler-user-agents load their whole data into objects on import or first
use and keep them; cmp needs one column of each, so it reads the file and keeps that.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import orjson


def package_json(package: str, *path: str) -> Any:
    """The parsed JSON file at `path` inside installed `package` (found, not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed as a package")
    return orjson.loads(Path(spec.submodule_search_locations[0], *path).read_bytes())
