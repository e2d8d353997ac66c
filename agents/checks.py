"""The names and checks that the algorithm, the experiment layer and the command line share, without torch.

``agents/cores.py`` and ``agents/serialization.py`` (which import torch) and the config checks, the
``train`` command and the sweep's driver (which must not: the driver plans a grid before Ray starts)
all import them from here, so each value and each check is defined once. Every check raises
:class:`rims_rl.errors.UserError` with one line naming the bad value and the valid ones.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from rims_rl.errors import UserError

CORES = ("rims", "lstm", "gru", "none")  # the recurrent cores (agents.cores.make_core)
OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop", "Adamax")  # torch.optim classes a config or model file may name
POLICIES = ("auto", "CnnPolicy", "MlpPolicy", "MultiInputPolicy")  # a config's `policy`
SCHEDULES = ("linear", "constant")  # ppo.lr_schedule, ppo.clip_schedule
MAX_TIMESTEPS = 2**62  # the step counter (and TensorBoard's step) is an int64
MAX_SEED = 2**32 - 1  # numpy's seeds
MATCHES = ("none", "state", "params")  # a config's `match`: how lstm/gru are sized against the RIMs core
LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+")


def is_int(value: Any, low: int) -> bool:
    """True for an int (not a bool) >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def is_positive_number(value: Any) -> bool:
    """True for a finite int or float (not a bool) > 0."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_core_name(core: str) -> str:
    """Return ``core`` if it names a known core, else raise UserError."""
    if core not in CORES:
        raise UserError(f"unknown core {core!r}; valid cores: {', '.join(CORES)}")
    return core


def check_label(label: Any, name: str = "--label") -> str:
    """Return ``label`` if it can name runs (a run dir component: letters, digits, ``. _ - +``), else UserError."""
    if (not isinstance(label, str) or not label or label.startswith(".") or len(label) > 100
            or not set(label) <= LABEL_CHARACTERS):
        raise UserError(f"{name} must be a name of letters, digits, '.', '_', '-' or '+' (not starting with '.', "
                        f"at most 100), got {label!r}")
    return label


def check_seed(seed: int, name: str = "--seed") -> None:
    """UserError unless ``seed`` is an integer in 0 .. 2**32 - 1 (what numpy accepts)."""
    if not is_int(seed, 0) or seed > MAX_SEED:
        raise UserError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}")


def grid_seeds(value: Any, where: str) -> list[int] | None:
    """A grid file's ``seeds`` as a list of ints (one int alone is a list of one; None if absent); UserError
    naming ``where`` for an empty list or a value that is not an integer."""
    if value is None:
        return None
    seeds = value if isinstance(value, list) else [value]
    if not seeds:
        raise UserError(f"{where}: seeds is an empty list; give at least one value or drop the key")
    if not all(is_int(s, 0) for s in seeds):
        raise UserError(f"{where}: seeds must be integers, got {value}")
    return seeds


def check_episodes(episodes: int, seed: int) -> None:
    """UserError unless ``episodes`` >= 1 and every reset seed ``seed`` .. ``seed + episodes - 1`` is valid."""
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    check_seed(seed)
    check_seed(seed + episodes - 1, "--seed + --episodes - 1 (the last episode's reset seed)")


def check_dir(directory: str | os.PathLike, flag: str, files: Sequence[str] = ()) -> None:
    """UserError unless ``directory`` is (or can become) a dir in which ``files`` can be written.

    ``flag`` names the option that gave it (``--logdir``, ``--out``) in the message.
    """
    directory = Path(directory)
    for path in (directory, *directory.parents):
        if path.exists() and not path.is_dir():
            raise UserError(f"{flag} {directory}: {path} is a file, not a directory")
    for name in files:
        if (directory / name).is_dir():
            raise UserError(f"{flag} {directory}: {directory / name} is a directory; choose another {flag}")
