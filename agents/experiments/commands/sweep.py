"""``rims-rl sweep``: many runs at once on Ray, envs x cores x seeds (see docs/sweep.md)."""
from __future__ import annotations

import argparse
from typing import Any

from agents.checks import CORES
from agents.experiments.commands.options import (add_label_and_match, add_n_envs, add_overrides, add_subcommand,
                                                 add_timesteps, from_config, presets)
from agents.experiments.config import DEFAULT_PRESET

NAME = "sweep"


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "many runs at once on Ray: envs x labels (cores, variants) x seeds",
                       "Train every env x label x seed as one Ray task each, side by side (one CPU and one torch "
                       "thread per run), into ordinary run dirs <logdir>/<env>/<label>/seed<N>/ with their output in "
                       "train.log. Re-running the same command skips finished runs and resumes interrupted ones; "
                       "Ctrl-C checkpoints the running runs. A failed run is retried from its checkpoint, and never "
                       "stops the others. See docs/sweep.md.")
    p.add_argument("grid", nargs="?", metavar="GRID.yaml",
                   help="a grid file (keys: envs or tasks, cores, labels, seeds, config, overrides, timesteps, "
                        "primary); flags override it")
    p.add_argument("--env", nargs="+", help=from_config("environment id(s)", "env"))
    p.add_argument("--core", nargs="+", choices=CORES, help=from_config("recurrent core(s)", "core"))
    p.add_argument("--seed", nargs="+", type=int, help=from_config("seed(s)", "seed"))
    add_label_and_match(p, several=True)
    p.add_argument("--config", help=f"a preset ({presets()}) or a YAML file (default: the grid file's, else "
                                    f"{DEFAULT_PRESET})")
    add_overrides(p, "override a config key (repeatable; applied after the grid file's overrides)")
    p.add_argument("--tuned", metavar="TUNED", help="each label's best values from rims-rl tune: its tuned.yaml or "
                                                    "the tune's env dir; refused unless every label had the same "
                                                    "number of trials (see docs/tune.md)")
    add_timesteps(p)
    add_n_envs(p)
    p.add_argument("--logdir", default="runs", help="root of the run dirs (on a cluster: a path every node sees)")
    p.add_argument("--evaluate", action="store_true",
                   help="evaluate each run after training (the config's eval.sweep), then compare per env")
    p.add_argument("--episodes", type=int, help="episodes per evaluation setting (default: the config's eval.episodes)")
    p.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all CPU cores)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto, HOST:6379) instead of starting one")
    p.add_argument("--device", metavar="auto|cpu|cuda",
                   help=from_config("torch device of the runs; with cuda or auto on GPUs Ray gives each run "
                                    "--gpus-per-run GPUs", "device"))
    p.add_argument("--gpus-per-run", type=float, help="GPUs (a fraction shares one) per run (default: 1 when the "
                                                      "device is CUDA, else 0)")
    p.add_argument("--retries", type=int, default=1, help="retries of a run that raises or whose worker dies")
    p.add_argument("--no-progress", action="store_true", help="no live status line")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl sweep`` with the parsed ``args``: the grid file merged with the flags, then the sweep."""
    from agents.experiments.sweep.driver import sweep
    from agents.experiments.sweep.grid import merge_grid, read_grid_file, tuned_overrides
    from agents.experiments.tune.tuned import read_tuned

    overrides = [*args.overrides, *([f"match={args.match}"] if args.match else [])]
    tuned = None
    if args.tuned:
        found = read_tuned(args.tuned)
        tuned = tuned_overrides(found.values, found.cores)
    grid = merge_grid(read_grid_file(args.grid) if args.grid else None, envs=args.env, cores=args.core,
                      seeds=args.seed, config=args.config, overrides=overrides, timesteps=args.timesteps,
                      n_envs=args.n_envs, labels=args.label, tuned=tuned)
    sweep(grid, logdir=args.logdir, evaluate=args.evaluate, episodes=args.episodes, workers=args.workers,
          address=args.address, device=args.device, gpus_per_run=args.gpus_per_run, retries=args.retries,
          progress=not args.no_progress)
