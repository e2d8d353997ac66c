"""Which env ids envs/ serves, of which kind, and what an Atari id says about its game.

Any id in gymnasium's registry is served: Atari ids (`ALE/<Game>-v5`, `<Game>NoFrameskip-v4`) and
MiniGrid/BabyAI ids (the built-in tasks included) get their own factories and shifts, every other id
is a generic gymnasium env. `module:EnvId` imports `module` first, so that its registration runs (as
`gymnasium.make` does).
"""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import NamedTuple

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from envs.errors import bad_value
from rims_rl.errors import UserError

KINDS = ("atari", "minigrid", "gym")
VALID_IDS = ("ALE/<Game>-v5", "<Game>NoFrameskip-v4", "MiniGrid-*", "BabyAI-*", "RedBallDistractors-v0",
             "PickupDistractors-v0", "MemoryDistractors-v0", "any registered gymnasium id",
             "module:EnvId (imports module first)")


class AtariGame(NamedTuple):
    """What an Atari id registers: the ALE game, its default sticky-action probability, its frame limit."""

    name: str
    repeat_action_probability: float
    max_frames: int


def is_atari(env_id: str) -> bool:
    """True for `ALE/<Game>-v5` and `<Game>NoFrameskip-v4` ids (by name; registration not checked)."""
    return (env_id.startswith("ALE/") and env_id.endswith("-v5")) or env_id.endswith("NoFrameskip-v4")


def _unknown(env_id: object) -> UserError:
    """The one-line error for an id not in the registry, with close registered ids if there are any."""
    valid = ", ".join(VALID_IDS)
    if isinstance(env_id, str):
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.75)
        if close:
            valid += f"; did you mean {', '.join(close)}?"
    return bad_value("env id", env_id, valid)


def _import_user_module(module: str) -> None:
    """Import a user's env module from the Python path, else from the current directory (the ``rims-rl``
    console script, unlike ``python train_agent.py``, does not put it on the path)."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        here = os.getcwd()
        if err.name != module.split(".")[0] or here in sys.path:
            raise
        sys.path.append(here)
        importlib.import_module(module)


def registered_id(env_id: str) -> str:
    """The registry key of `env_id`: `module:EnvId` imports `module` and gives `EnvId`; other ids as they are.

    UserError (one line) for an id that is not registered (after the import), a module that cannot be
    found, or a malformed `module:EnvId`. An error raised inside the module itself propagates: it is a
    bug of that module, and its traceback says where.
    """
    if not isinstance(env_id, str):
        raise _unknown(env_id)
    module, sep, name = env_id.partition(":")
    if sep:
        if not module or not name or ":" in name:
            raise UserError(f"bad env id {env_id!r}; valid: module:EnvId with one colon, e.g. my_envs:Maze-v0")
        try:
            _import_user_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
                raise  # the module exists but imports something missing: its own traceback says what
            raise UserError(f"cannot import module {module!r} of env id {env_id!r} ({err}); valid: module:EnvId "
                             f"with a module in the current directory or on PYTHONPATH that registers EnvId") from None
        if name not in gym.registry:
            raise UserError(f"module {module!r} did not register env id {name!r} (asked for {env_id!r}); "
                             f"valid: an id it registers with gymnasium.register")
        return name
    if env_id not in gym.registry:
        raise _unknown(env_id)
    return env_id


def env_kind(env_id: str) -> str:
    """'atari', 'minigrid' or 'gym' (any other registered env); UserError (one line) for an unknown id."""
    name = registered_id(env_id)
    if is_atari(name):
        return "atari"
    from minigrid.minigrid_env import MiniGridEnv

    entry = gym.spec(name).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    if isinstance(creator, type) and issubclass(creator, MiniGridEnv):
        return "minigrid"
    return "gym"


def atari_game(env_id: str) -> AtariGame:
    """(ALE game name, default repeat-action probability, max frames per episode) of a registered Atari id."""
    kwargs = gym.spec(registered_id(env_id)).kwargs
    return AtariGame(kwargs["game"], float(kwargs.get("repeat_action_probability", 0.0)),
                     int(kwargs.get("max_num_frames_per_episode") or 108_000))
