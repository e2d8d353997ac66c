"""The random-policy baseline of each setting, measured by the package itself and cached.

A uniformly random policy plays the same paired episodes as the models (same episode seeds), and
its mean return and success rate per setting are the ``R_random`` of the normalized score.

Cache: one JSON file per env, ``<logdir>/<env>/random_baseline.json`` beside the env's run dirs
(``baseline_cache_path``; a run dir outside that layout keeps it in its evaluation's output dir),
guarded by a lock file. An entry is keyed by the setting's shifts, the base seed and the episode
count, and stores its episode count; a later evaluation with the same key reuses it instead of
playing again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from agents.experiments.config import EVAL_ENVS
from agents.experiments.evaluation.episodes import run_episodes
from agents.experiments.evaluation.ladder import Setting
from agents.experiments.evaluation.metrics import summarize
from agents.experiments.files import atomic_write_text
from agents.experiments.runs import env_dirname
from envs import make_vec_env

CACHE_FILE = "random_baseline.json"
CACHE_VERSION = 1


class RandomPolicy:
    """A uniformly random policy with SB3's ``predict`` signature (actions from a seeded ``action_space``)."""

    def __init__(self, action_space, seed: int = 0) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        n = len(episode_start) if episode_start is not None else 1
        return np.array([self.action_space.sample() for _ in range(n)]), None


def baseline_cache_path(run_dir: str | os.PathLike | None, fallback_dir: str | os.PathLike, env_id: str) -> Path:
    """The cache file: beside the env's run dirs (``<logdir>/<env>/``) for a run in the standard layout
    (``<logdir>/<env>/<label>/seed<N>``), else in ``fallback_dir`` (the evaluation's output dir), so that a
    run dir kept elsewhere never writes into whatever dir lies two levels above it (or the current dir)."""
    if run_dir is not None:
        env_dir = Path(run_dir).resolve().parent.parent
        if env_dir.name == env_dirname(env_id):
            return env_dir / CACHE_FILE
    return Path(fallback_dir) / CACHE_FILE


def cache_key(setting: Setting, seed: int, episodes: int) -> str:
    """The cache key of one setting's baseline: shifts, base seed and episode count."""
    return f"{setting.key()}|seed={seed}|episodes={episodes}"


def _read_cache(path: Path, env_id: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != CACHE_VERSION or data.get("env") != env_id:
        return {}
    return data.get("entries", {})


def random_baseline(env_id: str, setting: Setting, episodes: int, seed: int, cache: str | os.PathLike,
                    n_envs: int = EVAL_ENVS) -> dict[str, Any]:
    """``{"mean_return", "success_rate", "episodes", "seed", "cached"}`` of the random policy on ``setting``.

    Read from the cache file ``cache`` when it holds this (setting, seed, episodes); else played
    (on the same episode seeds as the models) and added to the cache.
    """
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = cache_key(setting, seed, episodes)
    with FileLock(str(path) + ".lock"):
        entries = _read_cache(path, env_id)
        if key in entries:
            return {**entries[key], "cached": True}
    probe = make_vec_env(env_id, n_envs=1, seed=seed, shifts=setting.shifts or None, training=False)
    action_space = probe.action_space
    probe.close()
    found = run_episodes(RandomPolicy(action_space, seed), env_id, setting.shifts, episodes, seed, n_envs=n_envs)
    summary = summarize(env_id, setting, found)
    entry = {"mean_return": summary.mean_return, "success_rate": summary.success_rate,
             "episodes": episodes, "seed": seed}
    with FileLock(str(path) + ".lock"):  # merge: another process may have added entries meanwhile
        entries = _read_cache(path, env_id)
        entries[key] = entry
        atomic_write_text(path, json.dumps({"version": CACHE_VERSION, "env": env_id, "entries": entries}, indent=1))
    return {**entry, "cached": False}
