"""The one-line error for bad user input."""
from __future__ import annotations

from rims_rl.errors import UserError


def bad_value(what: str, value: object, valid: object) -> UserError:
    """UserError naming the bad value and listing the valid ones, on one line."""
    if isinstance(valid, (set, frozenset, dict)):
        valid = sorted(valid)
    if isinstance(valid, (list, tuple)):
        valid = ", ".join(str(v) for v in valid)
    return UserError(f"unknown {what} {value!r}; valid: {valid}")
