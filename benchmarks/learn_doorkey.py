"""Learning benchmark: MiniGrid-DoorKey-5x5 through the CNN path (symbolic 7x7 view, small grid CNN).

Pass: mean return over the last 100 training episodes >= THRESHOLD within the step budget
(a return of 1 - 0.9 * steps / 250: ~0.95 for a shortest-path policy, 0 if the door is never reached).
Prints the mean return every 10 rollouts and the first step at which the threshold was reached.

    python benchmarks/learn_doorkey.py                          # rims and lstm, full budget
    python benchmarks/learn_doorkey.py --cores lstm --steps 50000
    python benchmarks/learn_doorkey.py --cores rims --bptt-length 16   # chunked BPTT (faster)
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents import RecurrentPPO
from envs import make_vec_env

ENV_ID = "MiniGrid-DoorKey-5x5-v0"
THRESHOLD = 0.8
DEFAULT_STEPS = 100_000
HYPERPARAMETERS = dict(
    learning_rate=5e-4, n_steps=128, n_minibatches=4, n_epochs=4, gamma=0.99, gae_lambda=0.95,
    clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
)
CORE_KWARGS = {"rims": dict(num_units=6, k=4, unit_size=32), "lstm": dict(hidden_size=128),
               "gru": dict(hidden_size=128), "none": None}


class Progress(BaseCallback):
    """Prints the running mean return and remembers when it first reached the threshold."""

    def __init__(self, every: int = 10) -> None:
        super().__init__()
        self.every = every
        self.rollouts = 0
        self.reached_at: int | None = None

    def mean_return(self) -> float:
        buffer = self.model.ep_info_buffer
        return float(np.mean([e["r"] for e in buffer])) if buffer else 0.0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        value = self.mean_return()
        if self.reached_at is None and value >= THRESHOLD and len(self.model.ep_info_buffer) >= 100:
            self.reached_at = self.num_timesteps
        if self.rollouts % self.every == 0:
            print(f"    steps={self.num_timesteps:7d} mean_return={value:.3f}", flush=True)


def train(core: str, steps: int, seed: int, bptt_length: int | None = None) -> tuple[float, int | None, float]:
    """(final mean return of the last 100 episodes, first step at threshold or None, seconds)."""
    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    model = RecurrentPPO("CnnPolicy", env, core=core, core_kwargs=CORE_KWARGS[core], seed=seed,
                         bptt_length=bptt_length, policy_kwargs={"features_dim": 128}, **HYPERPARAMETERS)
    progress = Progress()
    start = time.time()
    model.learn(steps, callback=progress)
    return progress.mean_return(), progress.reached_at, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", nargs="+", default=["rims", "lstm"])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bptt-length", type=int, default=None, help="cap on the update's sequence length")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"{ENV_ID}: threshold {THRESHOLD} mean return (last 100 episodes) within {args.steps} steps, "
          f"8 envs x 128 steps, bptt_length={args.bptt_length}, {args.threads} threads", flush=True)
    for core in args.cores:
        for seed in args.seeds:
            final, reached, seconds = train(core, args.steps, seed, args.bptt_length)
            verdict = f"PASS at {reached} steps" if reached is not None else "below"
            print(f"core={core:5s} seed={seed} final_mean_return={final:.3f} {verdict} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
