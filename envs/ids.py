"""Which env ids envs/ serves, and what an Atari id says about its game."""
from __future__ import annotations

from functools import lru_cache

import gymnasium as gym

from envs.errors import bad_value

VALID_IDS = ("ALE/<Game>-v5", "<Game>NoFrameskip-v4", "MiniGrid-*", "BabyAI-*", "RedBallDistractors-v0",
             "PickupDistractors-v0")


def is_atari(env_id: str) -> bool:
    """True for `ALE/<Game>-v5` and `<Game>NoFrameskip-v4` ids (by name; registration not checked)."""
    return (env_id.startswith("ALE/") and env_id.endswith("-v5")) or env_id.endswith("NoFrameskip-v4")


@lru_cache(maxsize=None)
def env_kind(env_id: str) -> str:
    """'atari' or 'minigrid'; UserError (one line) for any other or unregistered id."""
    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise bad_value("env id", env_id, VALID_IDS)
    if is_atari(env_id):
        return "atari"
    from minigrid.minigrid_env import MiniGridEnv
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    if isinstance(creator, type) and issubclass(creator, MiniGridEnv):
        return "minigrid"
    raise bad_value("env id", env_id, VALID_IDS)


def atari_game(env_id: str) -> tuple[str, float, int]:
    """(ALE game name, default repeat-action probability, max frames per episode) of an Atari id."""
    kwargs = gym.spec(env_id).kwargs
    return kwargs["game"], float(kwargs.get("repeat_action_probability", 0.0)), int(
        kwargs.get("max_num_frames_per_episode") or 108_000)
