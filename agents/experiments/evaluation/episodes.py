"""Paired evaluation episodes: exactly ``episodes`` of them, episode ``i`` reset with seed ``seed + i``.

Episode ``i`` of every setting and every model is reset with the seed ``seed + i`` (layouts,
no-op starts, floor tiles), whichever sub-env runs it, and exactly ``episodes`` episodes are kept,
indexed by ``i`` (not "whatever finished first"). So differences between cores and levels are paired.

Per episode: the return (true, unclipped), success (MiniGrid/BabyAI: the episode ended with a
positive reward, i.e. the goal was reached; Atari: None, no such notion) and the length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.experiments.config import EVAL_ENVS
from agents.experiments.evaluation.ladder import has_success
from envs import episode_starts, make_vec_env
from rims_rl.errors import UserError

EVAL_THREADS = 1  # batched one-step inference on CPU: more threads only add synchronisation


@dataclass(frozen=True)
class Episode:
    """One finished episode: its index in the setting, reset seed, return, success and length."""

    index: int
    seed: int
    ret: float
    success: bool | None
    length: int

    def record(self) -> dict[str, Any]:
        """The results.json record."""
        return {"index": self.index, "seed": self.seed, "return": self.ret, "success": self.success,
                "length": self.length}


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode ``index`` of an evaluation with base ``seed`` (same in every setting)."""
    return int(seed) + int(index)


class _Schedule:
    """Hands out episode indices 0..episodes-1 in order; None once all are taken."""

    def __init__(self, episodes: int) -> None:
        self.episodes, self.next = episodes, 0

    def take(self) -> int | None:
        index = self.next if self.next < self.episodes else None
        self.next += 1
        return index


class ScheduledReset(gym.Wrapper):
    """Resets its env with the seed of the next episode index of a shared :class:`_Schedule`.

    The seed a VecEnv passes is ignored, so an episode's layout depends on its index only, not on
    which sub-env runs it. ``index`` is the running episode's index (None: a spare episode that
    is not recorded, run only because its sub-env cannot pause).
    """

    def __init__(self, env: gym.Env, schedule: _Schedule, seed: int) -> None:
        super().__init__(env)
        self.schedule, self.base_seed = schedule, seed
        self.index: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.index = self.schedule.take()
        seed = episode_seed(self.base_seed, self.index) if self.index is not None else None
        return self.env.reset(seed=seed, options=options)


def _episode(index: int, seed: int, info: dict[str, Any], reward: float, with_success: bool) -> Episode:
    return Episode(index, episode_seed(seed, index), float(info["episode"]["r"]),
                   bool(reward > 0) if with_success else None, int(info["episode"]["l"]))


def run_episodes(
    model,
    env_id: str,
    shifts: dict[str, int] | None,
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    n_envs: int = EVAL_ENVS,
    on_step: Callable[[Any], None] | None = None,
) -> list[Episode]:
    """Exactly ``episodes`` paired episodes (see the module doc), in index order.

    ``model`` needs ``predict(obs, state, episode_start, deterministic) -> (actions, state)``
    (SB3 style; one batched no-grad call per step for all sub-envs). ``on_step(model)`` is called
    after every ``predict`` (e.g. to read the RIMs mask). The recurrent state is reset at episode
    starts and, for Atari, at every lost life, as in training (``envs.episode_starts``). A
    DummyVecEnv (MiniGrid/BabyAI; also below VecEnvWrappers) reseeds each sub-env at every episode
    start; other VecEnvs (Atari) run waves of ``n_envs`` episodes, each wave reset with
    ``venv.seed(seed + first index)``. Observations only pass from the VecEnv to ``predict`` (Box
    or Dict alike).
    """
    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    if n_envs < 1:
        raise UserError(f"n_envs must be >= 1, got {n_envs}")
    n = min(n_envs, episodes)
    venv = make_vec_env(env_id, n_envs=n, seed=seed, shifts=shifts or None, training=False,
                        instructions=reads_mission(model))
    with_success = has_success(env_id)
    try:
        if isinstance(venv.unwrapped, DummyVecEnv):  # also below VecEnvWrappers (e.g. observation adapters)
            found = _run_scheduled(model, venv, episodes, seed, deterministic, on_step, with_success)
        else:
            found = _run_waves(model, venv, episodes, seed, deterministic, on_step, with_success)
    finally:
        venv.close()
    return [found[i] for i in range(episodes)]


def _run_scheduled(model, venv, episodes: int, seed: int, deterministic: bool,
                   on_step: Callable[[Any], None] | None, with_success: bool) -> dict[int, Episode]:
    schedule = _Schedule(episodes)
    inner = venv.unwrapped  # the DummyVecEnv; its sub-envs reset inside its step (auto-reset)
    wrappers = [ScheduledReset(env, schedule, seed) for env in inner.envs]
    inner.envs = wrappers
    found: dict[int, Episode] = {}
    obs = venv.reset()
    state, starts = None, np.ones(venv.num_envs, dtype=bool)
    while len(found) < episodes:
        running = [w.index for w in wrappers]  # before the step: a done sub-env resets inside it
        actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
        if on_step is not None:
            on_step(model)
        obs, rewards, dones, infos = venv.step(actions)
        for i in np.flatnonzero(dones):
            if running[i] is not None:
                found[running[i]] = _episode(running[i], seed, infos[i], float(rewards[i]), with_success)
        starts = episode_starts(dones, infos)
    return found


def _run_waves(model, venv, episodes: int, seed: int, deterministic: bool,
               on_step: Callable[[Any], None] | None, with_success: bool) -> dict[int, Episode]:
    n = venv.num_envs
    found: dict[int, Episode] = {}
    for first in range(0, episodes, n):
        venv.seed(episode_seed(seed, first))  # sub-env i: seed + first + i
        obs = venv.reset()
        state, starts = None, np.ones(n, dtype=bool)
        pending = set(range(min(n, episodes - first)))
        while pending:
            actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            if on_step is not None:
                on_step(model)
            obs, rewards, dones, infos = venv.step(actions)
            for i in np.flatnonzero(dones):
                if i in pending and "episode" in infos[i]:
                    found[first + i] = _episode(first + int(i), seed, infos[i], float(rewards[i]), with_success)
                    pending.discard(int(i))
            starts = episode_starts(dones, infos)
    return found


def reads_mission(model) -> bool:
    """Whether ``model`` was built for dict observations with the mission (envs' ``instructions``), not for
    another dict env's observations."""
    from agents.extractors import is_instruction_space

    return is_instruction_space(getattr(model, "observation_space", None))
