"""HTML from template files: every value escaped, unless it is markup built from a template.

A template file under `cmp/static/` holds named fragments, each after a line
``<!-- fragment: name -->``, with `string.Template` placeholders (`$name`). `fill`
escapes each value it is given; only an `Html` value (what `fill` returns) goes in as
is, so a page is built from fragments and no text can become markup on the way.
"""

from __future__ import annotations

import re
from functools import cache
from html import escape
from importlib import resources
from string import Template

_FRAGMENT = re.compile(r"^<!--\s*fragment:\s*(\w+)\s*-->$", re.MULTILINE)


class Html(str):
    """Markup built by `fill`: inserted into another fragment without escaping."""

    __slots__ = ()


@cache
def fragments(filename: str) -> dict[str, Template]:
    """The named fragments of `cmp/static/<filename>` (read once per process); text
    before the first marker is a comment for the reader and is dropped."""
    text = (resources.files("cmp") / "static" / filename).read_text(encoding="utf-8")
    parts = _FRAGMENT.split(text)
    return {
        name: Template(body.strip()) for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def fill(template: Template, **values: str | int | Html) -> Html:
    """`template` with each value escaped for text and quoted attributes; KeyError when
    a placeholder has no value."""
    return Html(
        template.substitute(
            {k: v if isinstance(v, Html) else escape(str(v)) for k, v in values.items()}
        )
    )


def join(parts: list[Html]) -> Html:
    return Html("".join(parts))
