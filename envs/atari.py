"""Atari factory: picks the fastest frame source that supports the requested shifts.

- no visual shift, no flavour: ale_py's C++ vector env does all preprocessing (gray 84x84 x 4).
- visual shifts or render_mode="rgb_array": the C++ env delivers max-pooled RGB frames, shifts
  act on them, then grayscale/resize/stack in Python (bit-identical to the C++ path when unshifted).
- flavour (game mode/difficulty) or backend="python": per-env gymnasium ALE games with SB3's
  no-op/max-and-skip/fire-reset wrappers (the C++ env cannot set modes).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from envs.errors import bad_value
from envs.shifts.atari_dynamics import available_modes, flavour_table, sticky_table
from envs.shifts.atari_visual import ORDER as VISUAL_SHIFTS
from envs.shifts.atari_visual import FrameShifter
from envs.vec import AtariVecEnv, NativeSource, PythonSource
from rims_rl.errors import UserError

if TYPE_CHECKING:
    from envs.spec import EnvSpec

BACKENDS = ("auto", "native", "python")
OPTIONS = ("backend", "mode", "difficulty", "noop_max", "num_threads")  # Atari env_kwargs


def make_atari_vec_env(spec: EnvSpec, n_envs: int, seed: int, levels: dict[str, int], training: bool,
                       render_mode: str | None = None, backend: str = "auto", mode: int | None = None,
                       difficulty: int | None = None, noop_max: int = 30,
                       num_threads: int | None = None) -> AtariVecEnv:
    """AtariVecEnv of `n_envs` games of the Atari env `spec`; `levels` are validated shift levels (0 ignored).

    mode/difficulty: explicit ALE game mode/difficulty (per-env Python path); flavour sets them too.
    num_threads: C++ threads of the native env (default: min(n_envs, CPU count)).
    """
    if backend not in BACKENDS:
        raise bad_value("backend", backend, BACKENDS)
    env_id = spec.id
    game, sticky, max_frames = spec.game
    active = {name: level for name, level in levels.items() if level > 0}
    sticky = sticky_table(sticky)[active.get("sticky", 0)]
    if "flavour" in active:
        mode, difficulty = flavour_table(game)[active["flavour"]]
    modes, difficulties = available_modes(game)
    if mode is not None and mode not in modes:
        raise bad_value(f"mode of {game}", mode, modes)
    if difficulty is not None and difficulty not in difficulties:
        raise bad_value(f"difficulty of {game}", difficulty, difficulties)
    visual = {name: level for name, level in active.items() if name in VISUAL_SHIFTS}
    python = backend == "python" or mode is not None or difficulty is not None
    if python and backend == "native":
        raise UserError(f"backend 'native' cannot set game mode/difficulty (mode={mode}, difficulty={difficulty}); "
                        "valid: backend 'auto' or 'python'")
    if python:
        source = PythonSource(env_id, n_envs, sticky, mode=mode, difficulty=difficulty, noop_max=noop_max,
                              max_frames=max_frames)
    else:
        threads = num_threads or min(n_envs, os.cpu_count() or 1)
        source = NativeSource(game, n_envs, sticky, rgb=bool(visual) or render_mode == "rgb_array",
                              noop_max=noop_max, max_frames=max_frames, num_threads=threads)
    shifters = [FrameShifter(visual, seed, i) for i in range(n_envs)] if visual else None
    description = f"{env_id}, {'python' if python else 'native'}" + (
        f", shifts={active}" if active else "") + (f", mode={mode}, difficulty={difficulty}" if python else "")
    return AtariVecEnv(source, seed, training, shifters, render_mode, description)
