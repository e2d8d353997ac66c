"""How a run or a sweep ends other than by finishing: the exceptions the command line maps to exit codes.

None of them is a user error or a bug: :class:`Interrupted` exits 130 (SIGINT) or 143 (SIGTERM) after a
checkpoint; :class:`TrainingDiverged` and :class:`SweepFailed` exit 1 with their one line.
"""
from __future__ import annotations

import signal


class Interrupted(Exception):
    """Training stopped by a signal; ``exit_code`` is 128 + the signal number (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, message: str, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.exit_code = 128 + int(getattr(signal, signal_name))


class TrainingDiverged(Exception):
    """Training stopped by a non-finite loss; the last good checkpoint is kept (exit code 1)."""


class SweepFailed(Exception):
    """Some runs of a sweep failed (the others finished); exit code 1."""
