"""Validation that stops past a cap of errors (docs/api.md: error lists are capped).

A problem lists at most ERRORS_MAX errors and counts the rest (`errors_omitted`, rendered
by cmp/api/problems.py). Pydantic finds every error of a body before it reports any, so a
64 KiB body of unknown keys would cost thousands of errors in time and in the answer;
the validators here make the request models stop instead: a batch stops at the event
where more than ERRORS_MAX were found, and a model ignores unknown fields past the first
ERRORS_MAX + 1. Each only stops where the body is already refused, so what is valid and
what is not is unchanged; an answer with `errors_omitted` is one whose body was not
checked to its end.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError, ValidationInfo, ValidatorFunctionWrapHandler

ERRORS_MAX = 20


class ErrorBudget:
    """Validation context of a batch: the errors its events had so far."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found = 0


def within_budget(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """An item of a batch, unless the batch already has more errors than the cap."""
    budget = info.context
    if not isinstance(budget, ErrorBudget):
        return handler(value)
    if budget.found > ERRORS_MAX:
        return None  # not checked: the batch is refused for the errors already found
    try:
        return handler(value)
    except ValidationError as exc:
        budget.found += exc.error_count()
        raise


def few_unknown_fields(value: Any, known: Collection[str]) -> Any:
    """`value` without the unknown fields past the first ERRORS_MAX + 1: those still make
    the model refuse it, and the rest would only add errors nobody reads."""
    if not isinstance(value, dict) or len(value) <= len(known):
        return value
    unknown = [name for name in value if name not in known]
    if len(unknown) <= ERRORS_MAX + 1:
        return value
    dropped = set(unknown[ERRORS_MAX + 1 :])
    return {name: item for name, item in value.items() if name not in dropped}
