"""The canonical encoding is exactly the documented json.dumps formula (docs/audit-log.md)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cmp.canonical import canonical_json


def documented(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


text = st.text(st.characters(exclude_categories=("Cs",)))  # no lone surrogates
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500)
@given(values)
def test_canonical_json_equals_the_documented_formula(obj: Any) -> None:
    assert canonical_json(obj) == documented(obj)


def test_every_code_point_is_written_the_same_way() -> None:
    for start in range(0, 0x110000, 4096):
        chars = [chr(c) for c in range(start, start + 4096) if not 0xD800 <= c <= 0xDFFF]
        obj = {"".join(chars[:64]): "".join(chars), "k": chars[:8]}
        assert canonical_json(obj) == documented(obj), hex(start)
