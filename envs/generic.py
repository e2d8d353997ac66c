"""Any other gymnasium env: a DummyVecEnv of Monitor-wrapped copies, observations passed through as they are."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
from rims_rl.errors import UserError

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv


def make_generic_vec_env(env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any],
                         render_mode: str | None = None,
                         wrap: Callable[[gym.Env, int], gym.Env] | None = None) -> VecEnv:
    """DummyVecEnv of `n_envs` Monitor-wrapped `gymnasium.make(env_id, **env_kwargs)`; sub-env i is reset with
    seed `seed + i` first (SB3's convention), its action space seeded the same way.

    wrap: `wrap(env, env_index)` applied to each env right after it is made (registered shift families).
    ValueError (one line) for env_kwargs the env's constructor does not take.
    """
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    def thunk(index: int) -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            env = gym.make(env_id, **env_kwargs, **({} if render_mode is None else {"render_mode": render_mode}))
            if wrap is not None:
                env = wrap(env, index)
            env.action_space.seed(seed + index)
            return Monitor(env)
        return make

    try:
        venv = DummyVecEnv([thunk(i) for i in range(n_envs)])
    except TypeError as err:
        if not env_kwargs:  # no argument of ours: a bug of the env, whose traceback says where
            raise
        raise UserError(f"bad env_kwargs {env_kwargs} for {env_id}: {err}") from None
    venv.seed(seed)
    return venv
