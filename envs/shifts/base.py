"""Shared vocabulary of shifts: levels, the built-in names, `ShiftInfo` and per-env random streams."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LEVELS: tuple[int, ...] = (0, 1, 2, 3)
BUILT_IN_SHIFTS: dict[str, tuple[str, ...]] = {  # env kind -> its built-in shifts, in the order they are listed
    "atari": ("flavour", "sticky", "colour", "noise", "background", "sprites", "occlusion"),
    "minigrid": ("distractors", "novel_distractors", "size", "novel_instructions", "floor_noise"),
}


@dataclass(frozen=True)
class ShiftInfo:
    """One shift as it applies to one env: its name, what it changes, and each level in numbers.

    `levels[0]` always describes the unchanged training env. `changes_scale`: the shift changes the
    task's scale (e.g. its step budget), so raw returns across its levels are not comparable.
    """

    name: str
    description: str
    levels: dict[int, str] = field(default_factory=dict)
    changes_scale: bool = False


def shift_rng(seed: int, env_index: int, shift_name: str) -> np.random.Generator:
    """Random stream of one shift in one sub-env, independent of the env's own stream.

    Same (seed, env_index, shift_name) -> same stream; the env's own randomness is never touched,
    so a shift changes only what it claims.
    """
    key = [int(b) for b in shift_name.encode()]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(env_index), *key])
