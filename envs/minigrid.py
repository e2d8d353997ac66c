"""MiniGrid/BabyAI: observation wrappers, which ids need their mission, and the VecEnv factory.

Observations are the agent's egocentric 7x7 view, symbolic uint8 [7, 7, 3] (object, colour, state)
by default, or RGB uint8 [56, 56, 3] with observation="rgb". With instructions=True they are a dict
{"image": that view, "mission": int64 [MISSION_LENGTH] token ids of the mission (envs.missions)}.
The built-in tasks live in envs.tasks.
"""
from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

from envs.minigrid_fast_obs import BoundFastGenObs, replaceable
from envs.missions import MISSION_LENGTH, VOCABULARY, encode_mission
from envs.shifts.minigrid_floor import FloorNoise
from envs.tasks import (  # noqa: F401  (entry points, old imports)
    MemoryDistractorsEnv, PickupDistractorsEnv, RedBallDistractorsEnv)
from rims_rl.errors import UserError

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

DEFAULT_ENV_ID = "RedBallDistractors-v0"
PICKUP_ENV_ID = "PickupDistractors-v0"
MEMORY_ENV_ID = "MemoryDistractors-v0"
BUILT_IN_IDS = {DEFAULT_ENV_ID: "envs.tasks:RedBallDistractorsEnv", PICKUP_ENV_ID: "envs.tasks:PickupDistractorsEnv",
                MEMORY_ENV_ID: "envs.tasks:MemoryDistractorsEnv"}
MISSION_SAMPLES = 10  # resets (seeds 0..9) that decide whether an id's mission varies


class QuietReset(gym.Wrapper):
    """Swallows BabyAI's 'Sampling rejected: unreachable object' prints during level generation."""

    def reset(self, **kwargs: Any):
        with contextlib.redirect_stdout(io.StringIO()):
            return self.env.reset(**kwargs)


class FastSymbolicObs(gym.Wrapper):
    """Makes the MiniGrid env build its symbolic observation with `envs.minigrid_fast_obs` (for speed).

    MiniGrid's own `gen_obs` (Grid.slice, rotate_left, process_vis, encode in Python loops) is ~85% of
    a DoorKey step; `fast_gen_obs` gives the same dict (bit-identical image, direction, mission) ~5x
    faster. It is installed as the unwrapped env instance's `gen_obs`, so MiniGrid's own `step`/`reset`
    and wrappers that call `unwrapped.gen_obs()` (FloorNoise) all use it; the wrapper's own step/reset
    just pass through. Envs whose class overrides gen_obs or gen_obs_grid are left as they are.
    Used for observation="symbolic" only (the RGB path is unchanged).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = self.env.unwrapped
        if replaceable(base):
            base.gen_obs = BoundFastGenObs(base)


class IntActions(gym.ActionWrapper):
    """Passes numpy integer actions (as DummyVecEnv gives them) to the env as Python ints (for speed).

    MiniGrid/BabyAI compare the action with `Actions` IntEnum members many times per step, and
    `np.int64 == IntEnum` costs ~5 us per comparison against ~0.1 us for an int; that was ~1/3 of a
    DoorKey step after FastSymbolicObs. Any other action goes through unchanged.
    """

    def action(self, action: Any) -> Any:
        return int(action) if isinstance(action, np.integer) else action


class MissionTokens(gym.ObservationWrapper):
    """MiniGrid's dict observation -> {"image": the view, "mission": int64 [MISSION_LENGTH] token ids}.

    The mission changes only at resets, so the ids of the last mission text are kept and handed out
    again (the same read-only array until the mission changes; DummyVecEnv copies it into its
    buffer). An unknown word or an over-long mission raises a one-line ValueError.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = spaces.Dict({
            "image": env.observation_space["image"],
            "mission": spaces.Box(0, len(VOCABULARY) - 1, (MISSION_LENGTH,), dtype=np.int64),
        })
        self._text: str | None = None
        self._tokens = np.zeros(MISSION_LENGTH, dtype=np.int64)

    def observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        text = observation["mission"]
        if text != self._text:
            self._tokens, self._text = encode_mission(text), text
            self._tokens.flags.writeable = False
        return {"image": observation["image"], "mission": self._tokens}


@lru_cache(maxsize=None)
def sample_missions(env_id: str) -> tuple[str, ...]:
    """The missions of MISSION_SAMPLES resets of `env_id` (seeds 0, 1, ...), in order of first appearance."""
    env = QuietReset(gym.make(env_id))
    try:
        return tuple(dict.fromkeys(env.reset(seed=seed)[0]["mission"] for seed in range(MISSION_SAMPLES)))
    finally:
        env.close()


def mission_varies(env_id: str) -> bool:
    """Whether `env_id`'s mission names different things in different episodes (so an agent must read it).

    Decided from MISSION_SAMPLES seeded resets, with "a" read as "the" (BabyAI writes "go to a red ball"
    when several match): True for PickupDistractors-v0, BabyAI GoToLocal/PickupDist/PickupLoc/GoToObj,
    MiniGrid Fetch/GoToObject/PutNear...; False for RedBallDistractors-v0, BabyAI GoToRedBall,
    MiniGrid DoorKey/Empty...
    """
    return len({re.sub(r"\ba\b", "the", m) for m in sample_missions(env_id)}) > 1


def instructions_choice(instructions: bool | str) -> bool | str:
    """An `instructions` option -> True, False or "auto"; ValueError (one line) for another value."""
    choice = {"auto": "auto", "true": True, "false": False}.get(instructions.lower()) if isinstance(
        instructions, str) else instructions if isinstance(instructions, bool) else None
    if choice is None:
        raise UserError(f"unknown instructions {instructions!r}; valid: auto, true, false")
    return choice


def resolve_instructions(env_id: str, instructions: bool | str, varies: bool | None = None) -> bool:
    """Whether `env_id` gets the dict observation with the mission: instructions "auto" -> whether its
    mission varies (`varies`, or mission_varies(env_id) when None); True/False as given. ValueError (one
    line) for another value, or a sampled mission that cannot be encoded."""
    choice = instructions_choice(instructions)
    if choice == "auto":
        use = mission_varies(env_id) if varies is None else varies
    else:
        use = choice
    if use:
        for mission in sample_missions(env_id):
            encode_mission(mission)
    return use


def _make_one(env_id: str, env_kwargs: dict[str, Any], floor_fraction: float, observation: str,
              render_mode: str | None, seed: int, env_index: int, fast_obs: bool = True,
              int_actions: bool = True, instructions: bool = False,
              wrap: Callable[[gym.Env, int], gym.Env] | None = None):
    # SB3 (and with it torch) is imported where an env is built, not with the module: `import envs` stays
    # light for the command line's checks and the sweep's driver process.
    from stable_baselines3.common.monitor import Monitor

    def thunk() -> gym.Env:
        env = gym.make(env_id, render_mode=render_mode, **env_kwargs)
        if wrap is not None:
            env = wrap(env, env_index)
        if fast_obs and observation == "symbolic":
            env = FastSymbolicObs(env)
        env = QuietReset(env)
        if floor_fraction > 0:
            env = FloorNoise(env, floor_fraction, seed, env_index)
        env = RGBImgPartialObsWrapper(env) if observation == "rgb" else env
        env = MissionTokens(env) if instructions else ImgObsWrapper(env)
        if int_actions:
            env = IntActions(env)
        return Monitor(env)
    return thunk


def make_minigrid_vec_env(env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any],
                          floor_fraction: float = 0.0, observation: str = "symbolic",
                          render_mode: str | None = None, fast_obs: bool = True,
                          int_actions: bool = True, instructions: bool = False,
                          wrap: Callable[[gym.Env, int], gym.Env] | None = None) -> VecEnv:
    """DummyVecEnv (faster than subprocesses for MiniGrid on 2 cores) of Monitor-wrapped envs.

    observation: "symbolic" -> uint8 [7, 7, 3]; "rgb" -> uint8 [56, 56, 3] (tile size 8).
    instructions: dict observations {"image": that, "mission": int64 [MISSION_LENGTH]} (MissionTokens).
    fast_obs, int_actions: the speed-ups FastSymbolicObs (symbolic observation only) and IntActions;
    neither changes any observation, reward or episode (False: MiniGrid's own path, for comparisons).
    wrap: `wrap(env, env_index)` applied to each env right after it is made (registered shift families).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([_make_one(env_id, env_kwargs, floor_fraction, observation, render_mode, seed, i,
                                  fast_obs, int_actions, instructions, wrap) for i in range(n_envs)])
    venv.seed(seed)
    return venv
