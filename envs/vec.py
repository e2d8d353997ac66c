"""`AtariVecEnv`: an SB3 VecEnv over a batch of Atari games (native C++ ALE or per-env Python).

Both frame sources autoreset in the same step (SB3 convention) and report true game ends; this
adapter adds what is common to them: optional visual shifts on the RGB frame, grayscale + 84x84
resize + 4-frame stack (only when the source delivers RGB), episodic life and reward clipping for
training, and Monitor-style `info["episode"] = {"r", "l", "t"}` at each real game end.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from envs.infos import LIFE_LOST
from envs.shifts.atari_visual import FrameShifter

OBS_SIZE = 84
STACK = 4


def rgb_to_gray84(frames: np.ndarray) -> np.ndarray:
    """RGB frames [N, 210, 160, 3] uint8 -> gray [N, 84, 84] uint8.

    One cvtColor and one INTER_AREA resize over the frames stacked vertically: 210 rows map to
    exactly 84 rows, so frames do not bleed into each other and the result equals ALE's C++
    preprocessing bit for bit (tested).
    """
    n, h, w, _ = frames.shape
    gray = cv2.cvtColor(frames.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (OBS_SIZE, n * OBS_SIZE), interpolation=cv2.INTER_AREA).reshape(n, OBS_SIZE, OBS_SIZE)


class NativeSource:
    """ale_py's C++ AtariVectorEnv (frame skip 4 + max-pool, no-op and fire reset, sticky actions).

    rgb=False: observations are already gray [N, 4, 84, 84]; rgb=True: max-pooled RGB [N, 210, 160, 3].
    Each step returns fresh arrays (never reused by ALE), so callers may keep or modify them.
    """

    def __init__(self, game: str, n_envs: int, repeat_action_probability: float, rgb: bool,
                 noop_max: int = 30, max_frames: int = 108_000, num_threads: int = 0):
        from ale_py.vector_env import AtariVectorEnv

        shape = dict(grayscale=False, img_height=210, img_width=160, stack_num=1) if rgb else {}
        self.env = AtariVectorEnv(
            game, n_envs, num_threads=num_threads, repeat_action_probability=repeat_action_probability,
            autoreset_mode="SameStep", noop_max=noop_max, max_num_frames_per_episode=max_frames,
            episodic_life=False, life_loss_info=False, reward_clipping=False, use_fire_reset=True, **shape)
        self.rgb = rgb
        self.action_space = self.env.single_action_space
        self.num_envs = n_envs

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, 0] if self.rgb else obs

    def reset(self, seeds: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
        seed = None if seeds[0] is None else np.asarray(seeds, dtype=np.int64)
        obs, info = self.env.reset(seed=seed)
        return self._frames(obs), np.asarray(info["lives"])

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions.astype(np.int64))
        final = info.get("final_obs")
        final = None if final is None else self._frames(final)
        return self._frames(obs), reward.astype(np.float64), terminated, truncated, np.asarray(info["lives"]), final

    def ram(self, index: int) -> np.ndarray:
        raise AttributeError("the native ALE vector env does not expose RAM; use backend='python'")

    def close(self) -> None:
        self.env.close()


class PythonSource:
    """Per-env gymnasium ALE games with SB3's no-op reset, max-and-skip 4 and fire reset (RGB frames).

    Used for game modes/difficulties (`flavour`), which the native vector env cannot set.
    """

    def __init__(self, env_id: str, n_envs: int, repeat_action_probability: float,
                 mode: int | None = None, difficulty: int | None = None, noop_max: int = 30,
                 max_frames: int = 108_000):
        from stable_baselines3.common.atari_wrappers import FireResetEnv, MaxAndSkipEnv, NoopResetEnv

        self.envs: list[gym.Env] = []
        for _ in range(n_envs):
            env = gym.make(env_id, obs_type="rgb", frameskip=1, repeat_action_probability=repeat_action_probability,
                           mode=mode, difficulty=difficulty, full_action_space=False,
                           max_num_frames_per_episode=max_frames)
            env = NoopResetEnv(env, noop_max=noop_max)
            env = MaxAndSkipEnv(env, skip=4)
            if "FIRE" in env.unwrapped.get_action_meanings():
                env = FireResetEnv(env)
            self.envs.append(env)
        self.action_space = self.envs[0].action_space
        self.num_envs = n_envs
        self.rgb = True

    def reset(self, seeds: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
        frames, lives = [], []
        for env, seed in zip(self.envs, seeds):
            obs, _ = env.reset(seed=seed)
            frames.append(obs)
            lives.append(env.unwrapped.ale.lives())
        return np.stack(frames), np.asarray(lives)

    def step(self, actions: np.ndarray):
        n = self.num_envs
        frames, lives = [], np.zeros(n, dtype=np.int64)
        reward = np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        final = None
        for i, env in enumerate(self.envs):
            obs, reward[i], terminated[i], truncated[i], _ = env.step(int(actions[i]))
            if terminated[i] or truncated[i]:
                if final is None:
                    final = np.zeros((n, *obs.shape), dtype=np.uint8)
                final[i] = obs
                obs, _ = env.reset()
            frames.append(obs)
            lives[i] = env.unwrapped.ale.lives()
        return np.stack(frames), reward, terminated, truncated, lives, final

    def ram(self, index: int) -> np.ndarray:
        """Emulator RAM (128 bytes) of sub-env `index`."""
        return self.envs[index].unwrapped.ale.getRAM().copy()

    def close(self) -> None:
        for env in self.envs:
            env.close()


class AtariVecEnv(VecEnv):
    """SB3 VecEnv of `n` Atari games; observations uint8 [n, 4, 84, 84] (channel-first, 4 frames).

    training=True: a lost life ends the agent's episode (the game goes on) and rewards are clipped
    to their sign; training=False: neither. Either way `info["life_lost"] = True` marks a lost life,
    and `info["episode"]` carries the true, unclipped return and the length in agent steps of each
    finished game.
    shifters: one FrameShifter per sub-env (visual shifts), or None.
    """

    def __init__(self, source: NativeSource | PythonSource, seed: int, training: bool,
                 shifters: list[FrameShifter] | None = None, render_mode: str | None = None,
                 description: str = ""):
        self.source = source
        self.training = training
        self.shifters = shifters
        self.render_mode = render_mode
        self.description = description
        n = source.num_envs
        obs_space = spaces.Box(0, 255, (STACK, OBS_SIZE, OBS_SIZE), dtype=np.uint8)
        super().__init__(n, obs_space, source.action_space)
        self.seed(seed)
        self._reset_rng = np.random.default_rng(seed)
        self._stack = np.zeros((n, STACK, OBS_SIZE, OBS_SIZE), dtype=np.uint8)
        self._frames: np.ndarray | None = None
        self._returns = np.zeros(n)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._starts = np.full(n, time.time())
        self._lives = np.zeros(n, dtype=np.int64)
        self._actions = np.zeros(n, dtype=np.int64)

    # ---- frames -> observations -------------------------------------------------------------
    def _shift(self, frames: np.ndarray, new_episode: np.ndarray) -> None:
        if self.shifters is None:
            return
        for i, shifter in enumerate(self.shifters):
            if new_episode[i]:
                shifter.new_episode(frames[i])
            shifter.apply(frames[i])

    def _push(self, frames: np.ndarray, new_episode: np.ndarray) -> np.ndarray:
        """Shift + gray RGB frames [n,210,160,3] into the frame stack; returns a copy of the stack."""
        self._shift(frames, new_episode)
        self._frames = frames
        gray = rgb_to_gray84(frames)
        self._stack[new_episode] = 0
        self._stack[:, :-1] = self._stack[:, 1:]
        self._stack[:, -1] = gray
        return self._stack.copy()

    def _terminal_stack(self, i: int, final_frame: np.ndarray) -> np.ndarray:
        """Stack of sub-env i ending with its (shifted) last frame, before the autoreset."""
        frame = final_frame.copy()
        if self.shifters is not None:
            self.shifters[i].apply(frame)
        stack = np.empty((STACK, OBS_SIZE, OBS_SIZE), dtype=np.uint8)
        stack[:-1] = self._stack[i, 1:]
        stack[-1] = rgb_to_gray84(frame[None])[0]
        return stack

    # ---- VecEnv API ---------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        seeds = self._seeds
        if seeds[0] is None:  # later resets: fresh but reproducible seeds drawn from the first seed
            seeds = [int(v) for v in self._reset_rng.integers(0, 2**31 - 1, self.num_envs)]
        frames, lives = self.source.reset(seeds)
        self._reset_seeds()
        self._lives = lives.astype(np.int64)
        self._returns[:] = 0
        self._lengths[:] = 0
        self._starts[:] = time.time()
        self.reset_infos = [{"lives": int(v)} for v in lives]
        if not self.source.rgb:
            return frames
        return self._push(frames, np.ones(self.num_envs, dtype=bool))

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        frames, reward, terminated, truncated, lives, final = self.source.step(self._actions)
        game_over = terminated | truncated
        life_lost = (lives < self._lives) & ~game_over
        self._lives = lives.astype(np.int64)
        dones = game_over | life_lost if self.training else game_over
        self._returns += reward
        self._lengths += 1
        infos: list[dict[str, Any]] = [{"lives": int(v)} for v in lives]
        for i in np.flatnonzero(life_lost):
            infos[int(i)][LIFE_LOST] = True

        terminal: dict[int, np.ndarray] = {}
        if self.source.rgb:
            for i in np.flatnonzero(game_over):
                terminal[int(i)] = self._terminal_stack(int(i), final[i])
            obs = self._push(frames, game_over)
        else:
            obs = frames
            for i in np.flatnonzero(game_over):
                terminal[int(i)] = final[i].copy()
        for i in np.flatnonzero(dones):
            i = int(i)
            infos[i]["terminal_observation"] = terminal[i] if i in terminal else obs[i].copy()
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        now = time.time()
        for i in np.flatnonzero(game_over):
            i = int(i)
            infos[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]),
                                   "t": round(float(now - self._starts[i]), 6)}
            self._returns[i], self._lengths[i], self._starts[i] = 0.0, 0, now
        rewards = np.sign(reward) if self.training else reward
        return obs, rewards.astype(np.float32), dones, infos

    def get_images(self) -> Sequence[np.ndarray | None]:
        """The current RGB frame [210, 160, 3] of each sub-env, shifts applied (needs render_mode='rgb_array')."""
        if self._frames is None:
            return [None] * self.num_envs
        return [frame.copy() for frame in self._frames]

    def ram(self, index: int) -> np.ndarray:
        """Emulator RAM of sub-env `index` (backend='python' only)."""
        return self.source.ram(index)

    def close(self) -> None:
        self.source.close()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [self.render_mode] * len(self._indices(indices))
        envs = getattr(self.source, "envs", None)
        if envs is None:
            raise AttributeError(f"{attr_name!r}: the native Atari vector env has no per-env attributes")
        return [envs[i].get_wrapper_attr(attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"AtariVecEnv does not support setting {attr_name!r} on sub-envs")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"AtariVecEnv does not support calling {method_name!r} on sub-envs")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for Monitor: episode statistics are recorded Monitor-style (SB3's evaluate_policy uses them)."""
        return [wrapper_class is Monitor] * len(self._indices(indices))

    def __repr__(self) -> str:
        return f"AtariVecEnv({self.description}, n_envs={self.num_envs}, training={self.training})"
