"""Learning benchmark: does reading the mission help? An instruction-conditioned agent against a mission-blind one.

Task: the built-in PickupDistractors-v0 ("pick up the <colour> <type>" among 2 distractors, the target
named only in the mission). Agents, each with the lstm and the rims core:
- instructed: MultiInputPolicy on dict observations {image, mission} (GRU instruction encoder + FiLM);
- blind: CnnPolicy on the image alone (instructions=False), the same grid CNN and core.
Both read the symbolic view as one-hot planes (`one_hot=True`, MultiInputPolicy's default).
Both train for the same number of env steps with the `minigrid` preset's PPO settings and core sizes,
then play EPISODES episodes (evaluation seeds, sampled actions) unshifted and under the top level of
`novel_distractors` and `novel_instructions`. Printed: the success rate (share of episodes whose
target was picked up) per setting, per run and averaged over seeds, and the training time.

A random policy's success rate is printed first (what "no skill" scores here). A blind agent can do
better than chance without the mission: in training, red/yellow/grey objects and boxes are only
ever targets (distractors are green/blue/purple keys and balls), so it can pick those up on sight;
`novel_distractors` takes that shortcut away.

    python benchmarks/learn_instructions.py                         # lstm and rims, seeds 0 1
    python benchmarks/learn_instructions.py --cores lstm --seeds 0 --steps 50000
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents import RecurrentPPO
from agents.experiments.config import load_preset
from agents.experiments.evaluation.episodes import run_episodes
from envs import PICKUP_ENV_ID, make_vec_env, parse_shifts

ENV_ID = PICKUP_ENV_ID
SETTINGS = {"unshifted": None, "novel_distractors=3": "novel_distractors=3", "novel_instructions=3": "novel_instructions=3"}
AGENTS = {"instructed": ("MultiInputPolicy", "auto"), "blind": ("CnnPolicy", False)}
EVAL_SEED = 1000


class Progress(BaseCallback):
    """Prints the success rate of the last 100 training episodes every `every` rollouts."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every, self.rollouts = every, 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        if self.every and self.rollouts % self.every == 0 and self.model.ep_info_buffer:
            success = np.mean([e["r"] > 0 for e in self.model.ep_info_buffer])
            print(f"    steps={self.num_timesteps:7d} training success (last 100 episodes) {success:.2f}", flush=True)


def random_success(episodes: int, shifts: str | None) -> float:
    """Success rate of uniformly random actions over `episodes` episodes."""
    venv = make_vec_env(ENV_ID, 8, seed=EVAL_SEED, shifts=shifts, training=False, instructions=False)
    venv.reset()
    rng, returns = np.random.default_rng(0), []
    while len(returns) < episodes:
        _, _, _, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        returns += [info["episode"]["r"] for info in infos if "episode" in info]
    return float(np.mean(np.array(returns[:episodes]) > 0))


def build(agent: str, core: str, seed: int) -> RecurrentPPO:
    """A fresh model with the minigrid preset's PPO settings and core sizes."""
    cfg = load_preset("minigrid")
    ppo = dict(cfg["ppo"])
    ppo.pop("lr_schedule")  # constant learning rate: the budget is the same for every agent
    policy, instructions = AGENTS[agent]
    env = make_vec_env(ENV_ID, n_envs=cfg["n_envs"], seed=seed, instructions=instructions)
    return RecurrentPPO(policy, env, core=core, core_kwargs=dict(cfg["cores"][core]), seed=seed,
                        policy_kwargs={"one_hot": True}, **ppo)


def train_and_evaluate(agent: str, core: str, seed: int, steps: int, episodes: int,
                       progress_every: int = 0) -> tuple[dict[str, float], float, float]:
    """({setting: success rate}, training wall seconds, training CPU seconds of this process) of one run."""
    model = build(agent, core, seed)
    start, cpu = time.time(), time.process_time()
    model.learn(steps, callback=Progress(progress_every))
    seconds, cpu = time.time() - start, time.process_time() - cpu
    success = {name: float(np.mean(run_episodes(model, ENV_ID, parse_shifts(shifts), episodes, seed=EVAL_SEED) > 0))
               for name, shifts in SETTINGS.items()}
    return success, seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", nargs="+", default=["lstm", "rims"])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress-every", type=int, default=0, help="print training success every N rollouts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"{ENV_ID}: {args.steps} env steps per run, minigrid preset PPO (constant lr), {args.threads} torch "
          f"thread(s); success rate over {args.episodes} evaluation episodes", flush=True)
    print("random policy: " + ", ".join(f"{name} {random_success(args.episodes * 5, shifts):.2f}"
                                        for name, shifts in SETTINGS.items()), flush=True)
    table: dict[tuple[str, str], list[dict[str, float]]] = {}
    for core in args.cores:
        for agent in args.agents:
            for seed in args.seeds:
                success, seconds, cpu = train_and_evaluate(agent, core, seed, args.steps, args.episodes,
                                                           args.progress_every)
                table.setdefault((core, agent), []).append(success)
                print(f"core={core:4s} agent={agent:10s} seed={seed} train {seconds:4.0f} s ({cpu:4.0f} CPU s)  "
                      + "  ".join(f"{k} {v:.2f}" for k, v in success.items()), flush=True)
    print("\nmean success rate over seeds " + str(args.seeds))
    print("| core | agent | " + " | ".join(SETTINGS) + " |")
    print("|---|---|" + "---|" * len(SETTINGS))
    for (core, agent), runs in table.items():
        print(f"| {core} | {agent} | " + " | ".join(f"{np.mean([r[k] for r in runs]):.2f}" for k in SETTINGS) + " |")


if __name__ == "__main__":
    main()
