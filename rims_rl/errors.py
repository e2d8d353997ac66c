"""The one error type for mistakes a user can fix, shared by rims_rl, envs and agents.

It imports nothing, so that every layer (and the command line's argument checks) can raise it
without importing torch.
"""
from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix (a bad flag, value, file or run dir); the command line shows it as one line.

    A ValueError subclass, so that code catching the ValueErrors these packages raised before still
    catches it. Any other exception that reaches the command line is a bug in rims-rl.
    """


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
