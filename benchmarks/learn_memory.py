"""Memory benchmark: a cue shown once must be acted on after a delay (a feed-forward policy cannot).

CueRecall (defined here): at t=0 the observation shows one of two cues; for ``delay`` steps it shows
nothing but a "waiting" flag; then a "query" flag appears and the action taken at that step is scored:
+1 if it names the cue, -1 otherwise (0 reward on all other steps). A policy without memory is right
half of the time (expected return 0); a policy that remembers the cue gets 1.

Pass: mean return over the last 100 training episodes >= THRESHOLD within the step budget.
Expected: ``rims`` and ``lstm`` pass, ``none`` stays near 0.

    python benchmarks/learn_memory.py                  # all cores, full budget, 2 threads
    python benchmarks/learn_memory.py --cores lstm --steps 20000
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from agents import RecurrentPPO

THRESHOLD = 0.9
DEFAULT_STEPS = 60_000
DEFAULT_DELAY = 10


class CueRecall(gym.Env):
    """Observation ``[cue_0, cue_1, waiting, query]`` (float32); 2 actions; episode length delay + 2."""

    def __init__(self, delay: int = DEFAULT_DELAY) -> None:
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        self.delay = delay
        self.observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._cue = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(4, np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t <= self.delay:
            obs[2] = 1.0
        else:
            obs[3] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(2))
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        if self._t <= self.delay:
            self._t += 1
            return self._obs(), 0.0, False, False, {}
        reward = 1.0 if int(action) == self._cue else -1.0
        return self._obs(), reward, True, False, {}


HYPERPARAMETERS = dict(
    learning_rate=1e-3, n_steps=32, n_minibatches=4, n_epochs=4, gamma=0.99, gae_lambda=0.95,
    clip_range=0.2, ent_coef=0.01,
)
CORE_KWARGS = {
    "rims": dict(num_units=4, k=2, unit_size=16),
    "lstm": dict(hidden_size=64),
    "gru": dict(hidden_size=64),
    "none": None,
}


def train(core: str, steps: int, seed: int = 0, delay: int = DEFAULT_DELAY, n_envs: int = 8) -> tuple[float, float]:
    """Train one agent; return (mean return of the last 100 episodes, seconds)."""
    env = make_vec_env(CueRecall, n_envs=n_envs, seed=seed, env_kwargs={"delay": delay})
    model = RecurrentPPO(
        "MlpPolicy", env, core=core, core_kwargs=CORE_KWARGS[core], seed=seed,
        policy_kwargs={"net_arch": (64,)}, **HYPERPARAMETERS,
    )
    start = time.time()
    model.learn(steps)
    returns = [info["r"] for info in model.ep_info_buffer]
    return float(np.mean(returns)), time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", nargs="+", default=["rims", "lstm", "none"])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--delay", type=int, default=DEFAULT_DELAY)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CueRecall delay={args.delay}: threshold {THRESHOLD} mean return (last 100 episodes) "
          f"within {args.steps} steps, {args.threads} threads")
    for core in args.cores:
        for seed in args.seeds:
            ret, seconds = train(core, args.steps, seed, args.delay)
            verdict = "PASS" if ret >= THRESHOLD else "below"
            print(f"core={core:5s} seed={seed} mean_return={ret:+.3f} {verdict} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
