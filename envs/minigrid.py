"""MiniGrid/BabyAI: the built-in red-ball distractor task, observation wrappers and the VecEnv factory.

Observations are the agent's egocentric 7x7 view, symbolic uint8 [7, 7, 3] (object, colour, state)
by default, or RGB uint8 [56, 56, 3] with observation="rgb".
"""
from __future__ import annotations

import contextlib
import io
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Key
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from envs.minigrid_fast_obs import BoundFastGenObs, replaceable
from envs.shifts.minigrid_floor import FloorNoise
from envs.shifts.minigrid_layout import NOVEL_COLOURS, TRAIN_COLOURS

DEFAULT_ENV_ID = "RedBallDistractors-v0"
DISTRACTOR_TYPES = ("key", "ball", "box")
OBJECT_CLASSES = {"key": Key, "ball": Ball, "box": Box}


class RedBallDistractorsEnv(MiniGridEnv):
    """Go to the red ball in one small room with `num_dists` distractor objects.

    Like BabyAI GoToRedBall, but small (size 6: a 4x4 floor), three actions (left, right, forward),
    short episodes and controllable distractor colours, so an image-only agent can learn it in
    minutes. Success: the agent faces the red ball (reward 1 - 0.9 * steps / max_steps).

    novel_fraction: probability that a distractor takes a colour from `novel_colours` instead of
    TRAIN_COLOURS (the colour draws are made either way, so layouts do not change with it).
    novel_colours=("red",): red keys/boxes (a red ball distractor becomes a red key).
    """

    def __init__(self, size: int = 6, num_dists: int = 2, novel_fraction: float = 0.0,
                 novel_colours: tuple[str, ...] = NOVEL_COLOURS, max_steps: int | None = None,
                 agent_view_size: int = 7, **kwargs: Any):
        self.size, self.num_dists = size, num_dists
        self.novel_fraction, self.novel_colours = novel_fraction, tuple(novel_colours)
        if max_steps is None:
            max_steps = 3 * (size - 2) ** 2
        super().__init__(mission_space=MissionSpace(mission_func=lambda: "go to the red ball"),
                         grid_size=size, max_steps=max_steps, see_through_walls=True,
                         agent_view_size=agent_view_size, **kwargs)
        self.action_space = spaces.Discrete(3)

    def _distractor(self) -> tuple[str, str]:
        kind = DISTRACTOR_TYPES[self._rand_int(0, len(DISTRACTOR_TYPES))]
        colour = TRAIN_COLOURS[self._rand_int(0, len(TRAIN_COLOURS))]
        novel_draw, pick = self.np_random.random(2)  # drawn at every level: layouts stay the same
        novel_colour = self.novel_colours[int(pick * len(self.novel_colours))]
        if novel_draw < self.novel_fraction:
            colour = novel_colour
        if colour == "red" and kind == "ball":
            kind = "key"
        return kind, colour

    def _gen_grid(self, width: int, height: int) -> None:
        while True:
            self.grid = Grid(width, height)
            self.grid.wall_rect(0, 0, width, height)
            self.place_agent()
            self.target_pos = self.place_obj(Ball("red"))
            for _ in range(self.num_dists):
                kind, colour = self._distractor()
                self.place_obj(OBJECT_CLASSES[kind](colour))
            if self._target_reachable():
                break
        self.mission = "go to the red ball"

    def _target_reachable(self) -> bool:
        """Breadth-first search from the agent over free cells to a cell next to the red ball."""
        start = tuple(int(v) for v in self.agent_pos)
        seen, todo = {start}, deque([start])
        while todo:
            x, y = todo.popleft()
            if abs(x - self.target_pos[0]) + abs(y - self.target_pos[1]) == 1:
                return True
            for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if (nx, ny) not in seen and self.grid.get(nx, ny) is None:
                    seen.add((nx, ny))
                    todo.append((nx, ny))
        return False

    def step(self, action: int):
        obs, reward, terminated, truncated, info = super().step(action)
        if tuple(self.front_pos) == tuple(self.target_pos):
            terminated, reward = True, self._reward()
        return obs, reward, terminated, truncated, info


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


def _make_one(env_id: str, env_kwargs: dict[str, Any], floor_fraction: float, observation: str,
              render_mode: str | None, seed: int, env_index: int, fast_obs: bool = True,
              int_actions: bool = True):
    def thunk() -> gym.Env:
        env = gym.make(env_id, render_mode=render_mode, **env_kwargs)
        if fast_obs and observation == "symbolic":
            env = FastSymbolicObs(env)
        env = QuietReset(env)
        if floor_fraction > 0:
            env = FloorNoise(env, floor_fraction, seed, env_index)
        env = RGBImgPartialObsWrapper(env) if observation == "rgb" else env
        env = ImgObsWrapper(env)
        if int_actions:
            env = IntActions(env)
        return Monitor(env)
    return thunk


def make_minigrid_vec_env(env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any],
                          floor_fraction: float = 0.0, observation: str = "symbolic",
                          render_mode: str | None = None, fast_obs: bool = True,
                          int_actions: bool = True) -> VecEnv:
    """DummyVecEnv (faster than subprocesses for MiniGrid on 2 cores) of Monitor-wrapped envs.

    observation: "symbolic" -> uint8 [7, 7, 3]; "rgb" -> uint8 [56, 56, 3] (tile size 8).
    fast_obs, int_actions: the speed-ups FastSymbolicObs (symbolic observation only) and IntActions;
    neither changes any observation, reward or episode (False: MiniGrid's own path, for comparisons).
    """
    venv = DummyVecEnv([_make_one(env_id, env_kwargs, floor_fraction, observation, render_mode, seed, i,
                                  fast_obs, int_actions) for i in range(n_envs)])
    venv.seed(seed)
    return venv
