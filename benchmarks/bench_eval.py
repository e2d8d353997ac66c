"""Evaluation throughput (episodes/s): the current `run_episodes` (paired seeds, many sub-envs, one
batched no-grad predict per step) against the evaluation code it replaced (4 sub-envs), same run.

    python benchmarks/bench_eval.py                  # demo-preset rims and lstm, 200 episodes per timing
    python benchmarks/bench_eval.py --model runs/demo/RedBallDistractors-v0/rims/seed0   # a trained agent
    python benchmarks/bench_eval.py --quick          # a smoke run

The agents are the demo preset's networks, untrained unless --model is given (an untrained agent
plays long episodes, so episodes/s is lower than for a trained one; the ratio is what counts).
Rounds are interleaved (old, new, old, new, ...) so load from other processes on a shared CPU
affects both alike; the figure is the median over rounds. Both use one torch thread (EVAL_THREADS).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.experiments.config import EVAL_ENVS
from agents.experiments.devices import torch_threads
from agents.experiments.evaluation.episodes import EVAL_THREADS, run_episodes
from envs import DEFAULT_ENV_ID, make_vec_env


def old_run_episodes(model, env_id: str, shifts, episodes: int, seed: int = 0, deterministic: bool = False,
                     n_envs: int = 4) -> np.ndarray:
    """The evaluation loop before paired episodes (commit d69e054), kept here as the baseline."""
    n = max(1, min(n_envs, episodes))
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=int)
    returns: list[float] = []
    venv = make_vec_env(env_id, n_envs=n, seed=seed, shifts=shifts or None, training=False)
    try:
        obs = venv.reset()
        state = None
        starts = np.ones(n, dtype=bool)
        while (counts < targets).any():
            actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            obs, _, dones, infos = venv.step(actions)
            for i, info in enumerate(infos):
                if "episode" in info and counts[i] < targets[i]:
                    returns.append(float(info["episode"]["r"]))
                    counts[i] += 1
            starts = np.asarray(dones, dtype=bool)
    finally:
        venv.close()
    return np.asarray(returns, dtype=np.float64)


def demo_agent(core: str):
    """An untrained agent with the demo preset's network for ``core``."""
    from agents.experiments.train import build_model
    from agents.experiments.validation import resolve_config, run_config

    cfg = run_config(resolve_config("demo"), core, 0)
    env = make_vec_env(cfg["env"], n_envs=cfg["n_envs"], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        return build_model(cfg, env, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model file or run dir instead of the untrained demo agents")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-envs", type=int, default=EVAL_ENVS, help="sub-envs of the new code")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.rounds = 32, 1
    if args.model:
        from agents.experiments.runs import load_model, resolve_model_path

        agents = {Path(args.model).name: load_model(resolve_model_path(args.model)[0])}
    else:
        agents = {core: demo_agent(core) for core in ("rims", "lstm")}
    print(f"{DEFAULT_ENV_ID}, unshifted, {args.episodes} episodes per timing, median of {args.rounds} "
          f"interleaved rounds, {EVAL_THREADS} torch thread")
    print(f"{'agent':8s} {'code':28s} {'episodes/s':>10s} {'steps/s':>9s} {'ratio':>6s}")
    with torch_threads(EVAL_THREADS):
        for name, agent in agents.items():
            timings: dict[str, list[tuple[float, int]]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                old_run_episodes(agent, DEFAULT_ENV_ID, None, args.episodes, seed=1000)
                timings["old"].append((time.perf_counter() - t0, 0))
                t0 = time.perf_counter()
                found = run_episodes(agent, DEFAULT_ENV_ID, None, args.episodes, seed=1000, n_envs=args.n_envs)
                timings["new"].append((time.perf_counter() - t0, sum(e.length for e in found)))
            old = statistics.median(t for t, _ in timings["old"])
            new = statistics.median(t for t, _ in timings["new"])
            steps = statistics.median(s for _, s in timings["new"])
            print(f"{name:8s} {'old (4 sub-envs)':28s} {args.episodes / old:10.1f} {'':>9s} {1.0:6.2f}")
            print(f"{name:8s} {f'new ({args.n_envs} sub-envs, paired seeds)':28s} {args.episodes / new:10.1f} "
                  f"{steps / new:9.0f} {old / new:6.2f}")


if __name__ == "__main__":
    main()
