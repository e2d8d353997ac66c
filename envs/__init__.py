"""Vectorized Atari, MiniGrid and any gymnasium environments, with graded distractor shifts.

    from envs import make_vec_env, list_shifts, parse_shifts, resolve_env, DEFAULT_ENV_ID
    venv = make_vec_env("ALE/Breakout-v5", n_envs=8, seed=0, shifts="colour=2,sprites=1")
    spec = resolve_env("CartPole-v1")  # EnvSpec: kind "gym", observation "vector", no shifts

Importing this package registers the ALE ids (needed in SubprocVecEnv workers too) and the
built-in tasks DEFAULT_ENV_ID (RedBallDistractors-v0), PICKUP_ENV_ID (PickupDistractors-v0) and
MEMORY_ENV_ID (MemoryDistractors-v0). Every function taking an env id also takes its EnvSpec
(resolve once at the entry, hand the spec down); `register_shift` adds a shift family for a user's env.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ale_py
import gymnasium as gym
import minigrid  # noqa: F401  (registers MiniGrid/BabyAI ids)
import numpy as np

from envs.errors import bad_value
from envs.ids import is_atari
from envs.infos import LIFE_LOST
from envs.minigrid import (BUILT_IN_IDS, DEFAULT_ENV_ID, MEMORY_ENV_ID, PICKUP_ENV_ID, instructions_choice,
                           make_minigrid_vec_env, resolve_instructions)
from envs.shifts import ShiftInfo, list_shifts, parse_shifts, register_shift, shift_table_markdown, unregister_shift
from envs.shifts import custom, minigrid_layout
from envs.shifts.minigrid_floor import FLOOR_FRACTION
from envs.spec import EnvSpec, as_spec, resolve_env
from rims_rl.errors import UserError

if TYPE_CHECKING:  # SB3 imports torch: `import envs` stays light, SB3 comes with the first env built
    from stable_baselines3.common.vec_env import VecEnv

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner per emulator
for _id, _entry_point in BUILT_IN_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry_point)

__all__ = ["DEFAULT_ENV_ID", "MEMORY_ENV_ID", "PICKUP_ENV_ID", "EnvSpec", "ShiftInfo", "episode_starts", "is_atari",
           "list_shifts", "make_vec_env", "parse_shifts", "register_shift", "resolve_env", "shift_table_markdown",
           "unregister_shift", "uses_instructions"]

RENDER_MODES = (None, "rgb_array")
OBSERVATIONS = ("symbolic", "rgb")


def uses_instructions(env_id: str | EnvSpec, instructions: bool | str = "auto") -> bool:
    """Whether make_vec_env(env_id, instructions=...) gives dict observations with the mission.

    "auto": MiniGrid/BabyAI ids whose mission varies between episodes (EnvSpec.instructions);
    True/False (or "true"/"false"): as asked. Atari and generic gymnasium ids have no mission: True is
    a UserError.
    """
    spec = as_spec(env_id)
    if spec.kind != "minigrid":
        if instructions_choice(instructions) is True:
            what = "Atari games have no mission" if spec.kind == "atari" else "only MiniGrid/BabyAI envs have a mission"
            raise UserError(f"instructions={instructions!r} does not apply to {spec.id}: {what}; valid: auto, false")
        return False
    return resolve_instructions(spec.id, instructions, varies=spec.instructions)


def make_vec_env(env_id: str | EnvSpec, n_envs: int = 1, seed: int = 0, shifts: str | Mapping[str, int] | None = None,
                 training: bool = True, render_mode: str | None = None, instructions: bool | str = "auto",
                 **env_kwargs: Any) -> VecEnv:
    """SB3 VecEnv of `n_envs` copies of `env_id` (an id or its EnvSpec), every sub-env shifted by `shifts`.

    Atari (`ALE/<Game>-v5`, `<Game>NoFrameskip-v4`): obs uint8 [n, 4, 84, 84]; training=True adds
    episodic life and reward clipping. env_kwargs: backend ("auto"|"native"|"python"), mode,
    difficulty, noop_max, num_threads.
    MiniGrid/BabyAI ids and the built-in tasks: obs uint8 [n, 7, 7, 3] (symbolic egocentric view), or
    [n, 56, 56, 3] with observation="rgb"; other env_kwargs go to the env constructor. Where the
    mission varies (instructions="auto"; or instructions=True) obs is a dict {"image": that view,
    "mission": int64 [n, MISSION_LENGTH] token ids, zero-padded} (envs.missions decodes them).
    Any other registered id, or `module:EnvId`: a DummyVecEnv of Monitor-wrapped envs whose Box,
    Discrete or Dict observations pass through unchanged; env_kwargs go to gymnasium.make; `training`
    changes nothing; shifts only where a registered family applies (envs.register_shift).
    At each real episode end info["episode"] = {"r": unclipped return, "l": length, "t": seconds}.
    The same seed gives the same observations; level 0 of any shift is the unshifted env.
    """
    spec = as_spec(env_id)
    with_mission = uses_instructions(spec, instructions)
    if not isinstance(n_envs, int) or n_envs < 1:
        raise UserError(f"bad n_envs {n_envs!r}; valid: an int >= 1")
    if render_mode not in RENDER_MODES:
        raise bad_value("render_mode", render_mode, RENDER_MODES)
    levels = parse_shifts(shifts, spec)
    if spec.kind == "atari":
        from envs.atari import OPTIONS, make_atari_vec_env

        for key in env_kwargs:
            if key not in OPTIONS:
                raise bad_value("Atari option", key, OPTIONS)
        return make_atari_vec_env(spec, n_envs, seed, levels, training, render_mode, **env_kwargs)
    wrap = custom.wrapper(levels, spec.registered_id, seed)
    registered_kwargs = custom.env_kwargs(levels, spec.registered_id)
    if spec.kind == "gym":
        from envs.generic import make_generic_vec_env

        return make_generic_vec_env(spec.id, n_envs, seed, {**env_kwargs, **registered_kwargs}, render_mode, wrap)
    observation = env_kwargs.pop("observation", "symbolic")
    if observation not in OBSERVATIONS:
        raise bad_value("observation", observation, OBSERVATIONS)
    kwargs = {**env_kwargs, **minigrid_layout.env_kwargs(spec.registered_id, levels), **registered_kwargs}
    try:
        return make_minigrid_vec_env(spec.id, n_envs, seed, kwargs, FLOOR_FRACTION[levels.get("floor_noise", 0)],
                                     observation, render_mode, instructions=with_mission, wrap=wrap)
    except TypeError as err:  # an argument the env's constructor does not take
        raise UserError(f"bad env_kwargs {env_kwargs} for {spec.id}: {err}") from None


def episode_starts(dones: np.ndarray, infos: Sequence[dict[str, Any]]) -> np.ndarray:
    """Which sub-envs start a new agent episode after a step: `dones`, and every lost Atari life.

    Training envs end the agent's episode at a lost life (a done); evaluation envs
    (training=False) play whole games and mark a lost life with `info["life_lost"]`. Passing this
    as `episode_start` to a recurrent policy resets its state where training reset it, as the
    RIMs authors' evaluation (Kostrikov's, with episodic life) did.
    """
    return np.asarray(dones, dtype=bool) | np.array([bool(info.get(LIFE_LOST)) for info in infos], dtype=bool)
