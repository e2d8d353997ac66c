"""Wall time of `rims-rl sweep` (Ray, 2 runs side by side) against the same runs through sequential `train`.

Four small runs (cores rims and lstm x seeds 0 and 1, the minigrid preset at a small budget, one
torch thread per run) are trained three ways, each a fresh `python train_agent.py ...` process into
its own logdir, in interleaved rounds:

- ``sweep``: ``rims-rl sweep --workers 2`` (Ray local instance, 2 runs at a time);
- ``train``: ``rims-rl train --core rims lstm --seed 0 1`` (one run after another, 1 thread each: the
  same runs with the same config). (``--set threads=2`` is no fair alternative for these small
  networks: a second thread slows them down, badly so on a shared machine; see docs/cli.md.)
- ``2 x train``: two ``train`` processes side by side, ``--seed 0`` and ``--seed 1`` (rims, then
  lstm), without Ray: what the machine gives two runs at once, the ceiling for the sweep.

It also times Ray's start-up alone (``ray.init(address="local", num_cpus=2)`` + ``ray.shutdown()``
in a fresh process, minus the same process without Ray). Prints the median wall time of each and the
speed-up of the sweep over each sequential baseline (goal: >= 1.7x over ``train``).

    python benchmarks/bench_sweep.py --timesteps 16384 --rounds 2
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train_agent.py"


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "RAY_AUTH_MODE": "disabled"}


def timed(*argvs: list[str]) -> float:
    """Wall time of ``python argv`` processes started together (each must exit 0)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, *argv], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    outputs = [p.communicate() for p in procs]
    elapsed = time.perf_counter() - t0
    for argv, p, (out, err) in zip(argvs, procs, outputs):
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(argv)}\n{out[-2000:]}{err[-2000:]}")
    return elapsed


RAY_START = ("import ray, logging; ray.init(address='local', num_cpus=2, include_dashboard=False, "
             "logging_level=logging.WARNING); ray.shutdown()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=16384, help="steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the median is shown)")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="leave out the two side-by-side train processes (saves a third of the time)")
    args = parser.parse_args()
    budget = ["--timesteps", str(args.timesteps), "--no-progress"]
    common = ["--core", "rims", "lstm", "--seed", "0", "1", *budget]
    ways = {
        "sweep (Ray, 2 workers)": lambda d: [[str(SCRIPT), "sweep", *common, "--workers", "2", "--logdir", d]],
        "train (sequential)": lambda d: [[str(SCRIPT), "train", *common, "--logdir", d]],
        "2 x train side by side (no Ray)": lambda d: [
            [str(SCRIPT), "train", "--core", "rims", "lstm", "--seed", seed, *budget, "--logdir", d] for seed in "01"],
        "ray start-up": lambda d: [["-c", RAY_START]],
        "python start-up": lambda d: [["-c", "import ray"]],
    }
    if args.no_ceiling:
        del ways["2 x train side by side (no Ray)"]
    times: dict[str, list[float]] = {name: [] for name in ways}
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    try:
        for r in range(args.rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in order:
                logdir = root / f"{r}-{list(ways).index(name)}"
                times[name].append(timed(*ways[name](str(logdir))))
                print(f"round {r + 1}: {name:34s} {times[name][-1]:7.1f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    sweep = med["sweep (Ray, 2 workers)"]
    print(f"\n4 runs (rims, lstm x seeds 0, 1) of {args.timesteps} steps, minigrid preset, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} interleaved round(s); each a fresh process")
    for name in ("sweep (Ray, 2 workers)", "train (sequential)", "2 x train side by side (no Ray)"):
        if name in med:
            print(f"  {name:34s} {med[name]:7.1f} s   sweep speed-up {med[name] / sweep:4.2f}x")
    if "2 x train side by side (no Ray)" in med:
        ceiling = med["train (sequential)"] / med["2 x train side by side (no Ray)"]
        print(f"  the machine's ceiling (2 x train over sequential): {ceiling:4.2f}x")
    per_round = [t / s for t, s in zip(times["train (sequential)"], times["sweep (Ray, 2 workers)"])]
    print(f"  speed-up per round: {', '.join(f'{r:.2f}x' for r in per_round)}")
    print(f"  Ray start-up + shutdown            {med['ray start-up'] - med['python start-up']:7.1f} s "
          f"(beyond importing ray)")


if __name__ == "__main__":
    main()
