"""``rims-rl train``: one run per core and seed, or continue a run dir (``--resume``)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

from agents.checks import CORES, check_dir
from agents.experiments.commands.options import (add_device, add_label_and_match, add_n_envs, add_overrides,
                                                 add_subcommand, add_timesteps, from_config, presets)
from agents.experiments.config import DEFAULT_PRESET
from rims_rl.errors import UserError

NAME = "train"


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "train agents (one run per core and seed)",
                       "Train recurrent PPO agents. Each core x seed gets a run dir <logdir>/<env>/<label>/seed<N>/ (label: the core unless --label names the variant) "
                       "with config.yaml, checkpoints, TensorBoard events and model.zip. Ctrl-C saves a checkpoint; "
                       "--resume continues it.")
    p.add_argument("--config", help=f"a preset ({presets()}) or a YAML file (default: {DEFAULT_PRESET})")
    add_overrides(p, "override a config key, nested with dots (e.g. ppo.learning_rate=1e-3, cores.rims.k=3); "
                     "repeatable")
    p.add_argument("--env", help=from_config("environment id", "env"))
    p.add_argument("--core", nargs="+", choices=CORES, help=from_config("recurrent core(s), one run each", "core"))
    p.add_argument("--seed", nargs="+", type=int, help=from_config("seed(s), one run each", "seed"))
    add_label_and_match(p)
    add_timesteps(p, note=", and a run interrupted and resumed ends at the same boundary")
    add_n_envs(p)
    p.add_argument("--shifts", help=from_config("training-time shifts, e.g. distractors=1", "shifts"))
    p.add_argument("--logdir", default="runs", help="root of the run dirs")
    p.add_argument("--eval-freq", type=int, help=from_config("periodic evaluation every N steps, 0 = off; "
                                                             "the best model is kept as best_model.zip", "eval.freq"))
    p.add_argument("--eval-episodes", type=int, help=from_config("episodes per periodic evaluation", "eval.episodes"))
    p.add_argument("--eval-shifts", help=from_config("shifts of the periodic evaluation", "eval.shifts"))
    p.add_argument("--checkpoint-freq", type=int,
                   help=from_config("checkpoint every N steps, 0 = only at the end", "checkpoint_freq"))
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run dir from its last checkpoint (same "
                   "config, step count and optimizer state; --timesteps may raise the budget, written to its "
                   "config.yaml, or stop this resume earlier, but not below the steps done)")
    add_device(p, from_config("torch device: auto = CUDA when torch sees a GPU, else cpu; with --resume it "
                              "only says where to continue", "device"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl train`` with the parsed ``args``."""
    train(config=args.config, overrides=args.overrides, cores=args.core, seeds=args.seed, logdir=args.logdir,
          resume=args.resume, progress=not args.no_progress, env=args.env, timesteps=args.timesteps,
          n_envs=args.n_envs, shifts=args.shifts, checkpoint_freq=args.checkpoint_freq,
          eval__freq=args.eval_freq, eval__episodes=args.eval_episodes, eval__shifts=args.eval_shifts,
          device=args.device, label=args.label, match=args.match)


def train(
    config: str | None = None,
    overrides: Sequence[str] = (),
    cores: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    logdir: str | os.PathLike = "runs",
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    **flags: Any,
) -> list:
    """One run per (core, seed), or continue the run dir ``resume``; returns their TrainOutcomes.

    ``flags``: config keys given as flags (``env``, ``timesteps``, ``n_envs``, ``shifts``,
    ``checkpoint_freq``, ``eval__freq``, ``eval__episodes``, ``eval__shifts``, ``device``, ``label``,
    ``match``); None = from
    config. Every run dir is checked before the first run starts. With ``resume`` only ``timesteps``
    and ``device`` (where to continue it, not stored in its config) may be given.
    """
    from agents.experiments.devices import resolve_device
    from agents.experiments.runs import refuse_existing, run_dir_for
    from agents.experiments.matching import run_configs
    from agents.experiments.train import nothing_to_resume, resume_config, train_run
    from agents.experiments.validation import resolve_config

    if resume is not None:
        extra = [k for k, v in flags.items() if v is not None and k not in ("timesteps", "device")]
        extra += ["--config"] * (config is not None)
        extra += ["--set"] * bool(overrides) + ["--core"] * bool(cores) + ["--seed"] * bool(seeds)
        if extra:
            names = ", ".join(e if e.startswith("--") else "--" + e.replace("__", "-").replace("_", "-")
                              for e in extra)
            raise UserError(f"--resume continues a run with its own config.yaml; drop {names} "
                            f"(only --timesteps and --device may be given)")
        run_dir = Path(resume)
        cfg = resume_config(run_dir, flags.get("timesteps"))
        finished = nothing_to_resume(run_dir, flags.get("timesteps"))
        if finished is not None:  # nothing is written: model.zip keeps its time, so its evaluation stays current
            print(finished)
            return []
        return [train_run(cfg, run_dir, resume=True, progress=progress, device=flags.get("device"))]
    base = resolve_config(config, overrides, **flags)
    check_dir(logdir, "--logdir")
    runs = [(cfg, run_dir_for(logdir, cfg["env"], cfg["label"], cfg["seed"]))
            for cfg in run_configs(base, cores, seeds or None)]
    for cfg, run_dir in runs:
        refuse_existing(run_dir)
        resolve_device(cfg.get("device", "auto"))  # `cuda` without a GPU: one line before anything is printed
    outcomes = []
    for cfg, run_dir in runs:
        name = cfg["core"] if cfg["label"] == cfg["core"] else f"{cfg['label']} ({cfg['core']})"
        print(f"training {name} (seed {cfg['seed']}) on {cfg['env']} for {cfg['timesteps']} steps -> {run_dir}")
        outcomes.append(train_run(cfg, run_dir, progress=progress))
        print(f"saved {outcomes[-1].model_file} (step {outcomes[-1].num_timesteps})")
    print(f"TensorBoard: tensorboard --logdir {logdir}")
    return outcomes
