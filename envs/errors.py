"""The one-line error for bad user input."""
from __future__ import annotations


def bad_value(what: str, value: object, valid: object) -> ValueError:
    """ValueError naming the bad value and listing the valid ones, on one line."""
    if isinstance(valid, (set, frozenset, dict)):
        valid = sorted(valid)
    if isinstance(valid, (list, tuple)):
        valid = ", ".join(str(v) for v in valid)
    return ValueError(f"unknown {what} {value!r}; valid: {valid}")
