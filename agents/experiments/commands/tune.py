"""``rims-rl tune``: equal-budget hyperparameter tuning of every label with Optuna on the sweep's runner."""
from __future__ import annotations

import argparse
from typing import Any

from agents.checks import CORES
from agents.experiments.commands.options import (add_device, add_label_and_match, add_n_envs, add_overrides,
                                                 add_subcommand, add_timesteps, from_config, presets)
from agents.experiments.config import DEFAULT_PRESET

NAME = "tune"


def register(subparsers: Any) -> None:
    """Add the ``tune`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "tune every label with the same search space and budget (Optuna)",
                       "Tune each env x label with Optuna (TPE, seeded): the same search space and the same number of "
                       "trials for every label, each trial trained on --seeds-per-trial tuning seeds (1000, 1001, ...: "
                       "never the seeds 0-999 a study reports) as sweep runs on Ray, and scored by the mean unshifted "
                       "success rate (return where the env has none) of its seeds, never on shifted settings. The "
                       "studies live in <logdir>/<env>/tune.journal: re-running the same command continues to --trials "
                       "finished trials per label; Ctrl-C re-queues the trials in flight. Writes <logdir>/<env>/"
                       "trials.csv and best_<label>.yaml; `rims-rl report <logdir>` shows them. See docs/tune.md.")
    p.add_argument("grid", nargs="?", metavar="GRID.yaml", help="a grid file (as for sweep: envs or tasks, cores, "
                                                               "labels, config, overrides, timesteps); flags override it")
    p.add_argument("--env", nargs="+", help=from_config("environment id(s)", "env"))
    p.add_argument("--core", nargs="+", choices=CORES, help=from_config("recurrent core(s)", "core"))
    add_label_and_match(p, several=True)
    p.add_argument("--trials", type=int, required=True, help="finished trials per label (the equal budget)")
    p.add_argument("--seeds-per-trial", type=int, default=2, help="tuning seeds each trial trains on")
    p.add_argument("--seed", type=int, default=1000, help="the first tuning seed: trials train on SEED, SEED+1, ... "
                                                          "(at least 1000: seeds 0-999 are the ones studies report)")
    add_timesteps(p, "environment steps per run of a trial (all sub-envs together)")
    add_n_envs(p)
    p.add_argument("--space", metavar="SPACE.yaml", help="the search space: dotted config keys -> {low, high[, log]} "
                                                         "or {choices: [...]} (default: learning rate, lr_schedule, "
                                                         "ent_coef, n_epochs, clip_range, bptt_length, rims k)")
    p.add_argument("--episodes", type=int, default=100, help="unshifted evaluation episodes per seed for the score")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="Optuna's sampler")
    p.add_argument("--sampler-seed", type=int, default=0, help="the samplers' seed (each label gets its own from "
                                                              "it); the runs train on the tuning seeds")
    p.add_argument("--config", help=f"a preset ({presets()}) or a YAML file (default: the grid file's, else "
                                    f"{DEFAULT_PRESET})")
    add_overrides(p, "override a config key for every label (repeatable; applied after the grid file's overrides)")
    p.add_argument("--logdir", default="runs/tune", help="root of the trials' run dirs and of the studies")
    p.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all CPU cores)")
    p.add_argument("--address", help="join this Ray cluster (e.g. HOST:6379) instead of starting one")
    add_device(p, from_config("torch device of the runs (with cuda or auto on GPUs Ray gives each run "
                              "--gpus-per-run GPUs)", "device"))
    p.add_argument("--gpus-per-run", type=float, help="GPUs (a fraction shares one) per run")
    p.add_argument("--retries", type=int, default=1, help="retries of a run that raises or whose worker dies")
    p.add_argument("--no-progress", action="store_true", help="no live status line")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl tune`` with the parsed ``args``: the grid merged with the flags, then the tune."""
    from agents.experiments.sweep.grid import merge_grid, read_grid_file
    from agents.experiments.tune.driver import tune

    overrides = [*args.overrides, *([f"match={args.match}"] if args.match else [])]
    grid = merge_grid(read_grid_file(args.grid) if args.grid else None, envs=args.env, cores=args.core,
                      config=args.config, overrides=overrides, timesteps=args.timesteps, labels=args.label,
                      n_envs=args.n_envs)
    tune(grid, args.logdir, args.trials, args.seeds_per_trial, space=args.space, episodes=args.episodes,
         sampler=args.sampler, seed=args.sampler_seed, first_seed=args.seed, workers=args.workers, address=args.address, device=args.device,
         gpus_per_run=args.gpus_per_run, retries=args.retries, progress=not args.no_progress)
