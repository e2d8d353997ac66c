"""`EnvSpec`: what envs/ knows about an env id, resolved once (`resolve_env`) and handed down.

Resolving an id imports its `module:` (if any), finds its kind, its Atari game, whether its mission
varies, its observation kind and the shifts that apply to it; every function of envs/ accepts the
spec in place of the id, so a caller that resolves at its entry never resolves again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.ids import AtariGame, atari_game, env_kind, registered_id
from envs.minigrid import mission_varies
from envs.shifts import available_shifts, custom
from envs.shifts.base import ShiftInfo
from rims_rl.errors import UserError

OBSERVATION_KINDS = ("image", "vector", "dict")
VECTOR_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


@dataclass(frozen=True)
class EnvSpec:
    """One env id, resolved: what make_vec_env, the policies and the evaluation need to know about it.

    id: as given, e.g. "ALE/Breakout-v5" or "my_envs:Maze-v0" (what gymnasium.make gets, so that
    other processes import the module too); registered_id: the registry key ("Maze-v0").
    kind: "atari", "minigrid" (MiniGrid/BabyAI and the built-in tasks) or "gym" (any other env).
    observation: what make_vec_env(id) gives with its default options: "image" (uint8 [H, W, C] or
    [C, H, W]), "vector" (other Box, Discrete, MultiDiscrete, MultiBinary) or "dict".
    instructions: the observation carries the mission with instructions="auto" (its mission varies).
    success: episodes end in success or failure, a positive return meaning success (MiniGrid/BabyAI).
    shifts: name -> ShiftInfo of every shift that applies ({} for none; read-only).
    game: the AtariGame of an Atari id, else None.
    """

    id: str
    registered_id: str
    kind: str
    observation: str
    instructions: bool
    success: bool
    shifts: dict[str, ShiftInfo] = field(hash=False)
    game: AtariGame | None = None


def observation_kind(space: spaces.Space, env_id: str) -> str:
    """"image", "vector" or "dict" for an observation space; UserError (one line) for another space."""
    if isinstance(space, spaces.Dict):
        return "dict"
    if (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and np.all(space.low == 0) and np.all(space.high == 255)):
        return "image"
    if isinstance(space, VECTOR_SPACES):
        return "vector"
    raise UserError(f"{env_id} has a {type(space).__name__} observation space, which the policies cannot read; "
                     f"valid: Box, Discrete, MultiDiscrete, MultiBinary or Dict")


def _gym_observation(env_id: str) -> str:
    """The observation kind of a generic env, read from one instance built with its registered arguments."""
    env = gym.make(env_id)
    try:
        return observation_kind(env.observation_space, env_id)
    finally:
        env.close()


@lru_cache(maxsize=None)
def _resolve(env_id: str, generation: int) -> EnvSpec:
    name = registered_id(env_id)
    kind = env_kind(env_id)
    game = atari_game(name) if kind == "atari" else None
    if kind == "atari":
        observation, instructions = "image", False
    elif kind == "minigrid":
        instructions = mission_varies(env_id)
        observation = "dict" if instructions else "image"
    else:
        observation, instructions = _gym_observation(env_id), False
    return EnvSpec(env_id, name, kind, observation, instructions, kind == "minigrid",
                   available_shifts(kind, name, game), game)


def resolve_env(env_id: str) -> EnvSpec:
    """The EnvSpec of `env_id` (cached; a shift family registered later is picked up).

    UserError (one line) for an unknown id, a `module:` that cannot be imported or does not register
    the id, or an observation space the policies cannot read.
    """
    if not isinstance(env_id, str):
        registered_id(env_id)  # the one-line error for a value that is no id at all
    return _resolve(env_id, custom.generation())


def as_spec(env: str | EnvSpec) -> EnvSpec:
    """`env` itself if it is an EnvSpec, else resolve_env(env)."""
    return env if isinstance(env, EnvSpec) else resolve_env(env)
