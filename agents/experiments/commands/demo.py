"""``rims-rl demo`` (also what runs with no arguments): train a RIMs and an LSTM agent on the built-in
distractor task, evaluate both across the shift ladder, compare them and write the report."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

from agents.checks import CORES, check_dir, check_episodes
from agents.experiments.commands.options import (add_hidden_alias, add_n_envs, add_overrides, add_subcommand,
                                                 add_timesteps, presets)
from agents.experiments.config import EVAL_SEED
from rims_rl.errors import UserError

NAME = "demo"
PRESET = "demo"  # the default config
RESULTS = Path(__file__).resolve().parents[3] / "docs" / "results"
# the committed study reports the demo points to, newest first: the first that exists is named
STUDY_REPORTS = ((RESULTS / "fair" / "report.md",
                  "the fair study (5 equally tuned cores x 10 seeds x 3 tasks, pre-registered)"),
                 (RESULTS / "distractors" / "report.md",
                  "the pilot study (4 cores x 5 seeds x 3 tasks, one untuned preset)"))


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "the main job (also what runs with no arguments)",
                       "Train a RIMs and an LSTM agent on the built-in distractor task, evaluate both across the "
                       "shift ladder, compare them, and print where everything is. Re-running reuses finished runs "
                       "and resumes interrupted ones.")
    p.add_argument("--config", default=PRESET, help=f"a preset ({presets()}) or a YAML file")
    add_overrides(p, "override a config key (repeatable)")
    add_hidden_alias(p, "--cores", p.add_argument("--core", nargs="+", choices=CORES, default=["rims", "lstm"],
                                                  help="recurrent cores to compare, one run per seed each"))
    add_hidden_alias(p, "--seeds", p.add_argument("--seed", nargs="+", type=int, default=[0],
                                                  help="seed(s), one run per core each"))
    add_timesteps(p, preset=PRESET)
    add_n_envs(p, preset=PRESET)
    p.add_argument("--logdir", default="runs/demo", help="where the runs and the comparison go")
    p.add_argument("--shifts", nargs="+", metavar="SPEC", help="evaluation settings (default: the config's eval.sweep)")
    p.add_argument("--episodes", type=int, help="episodes per evaluation setting (default: the config's eval.episodes)")
    p.add_argument("--workers", type=int, help="runs trained side by side on a local Ray instance, as `sweep` "
                                               "does (default: all CPU cores; 1 = one after another in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (nor live status line)")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl demo`` with the parsed ``args``."""
    demo(config=args.config, overrides=args.overrides, cores=args.core, seeds=args.seed, logdir=args.logdir,
         shifts=args.shifts, episodes=args.episodes, progress=not args.no_progress, workers=args.workers,
         timesteps=args.timesteps, n_envs=args.n_envs)


def demo(
    config: str = PRESET,
    overrides: Sequence[str] = (),
    cores: Sequence[str] = ("rims", "lstm"),
    seeds: Sequence[int] = (0,),
    logdir: str | os.PathLike = "runs/demo",
    shifts: Sequence[str] | str | None = None,
    episodes: int | None = None,
    progress: bool = True,
    reps: int = 2000,
    workers: int | None = None,
    timesteps: int | None = None,
    n_envs: int | None = None,
) -> list[dict[str, Any]]:
    """Train each core x seed, evaluate across the shift ladder, compare, write the report and print where
    everything is; returns the comparison's rows.

    Re-running it with the same config reuses finished runs and resumes interrupted ones. Two or
    more runs to train are trained side by side on the sweep's engine (a local Ray instance with
    ``workers`` CPUs, default all cores); one run, or ``workers=1``, trains in this process.
    ``timesteps`` and ``n_envs`` replace the config's (None: the config's).
    """
    from agents.experiments.evaluation.evaluate import evaluate_run
    from agents.experiments.evaluation.ladder import ladder_settings
    from agents.experiments.runs import EVAL_DIR, FINAL_MODEL, run_dir_for, run_state
    from agents.experiments.study import report_line, write_comparison, write_study_report
    from agents.experiments.train import train_run
    from agents.experiments.matching import run_configs
    from agents.experiments.validation import resolve_config

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    base = resolve_config(config, overrides, timesteps=timesteps, n_envs=n_envs)
    check_dir(logdir, "--logdir")
    ladder = shifts if shifts is not None else base["eval"]["sweep"]
    episodes = episodes if episodes is not None else base["eval"]["episodes"]
    ladder_settings(base["env"], ladder)  # validate before training
    check_episodes(episodes, EVAL_SEED)
    cores, seeds = list(dict.fromkeys(cores)), list(dict.fromkeys(seeds))  # a repeated core/seed: one run
    runs = [(cfg, run_dir_for(logdir, cfg["env"], cfg["label"], cfg["seed"])) for cfg in run_configs(base, cores, seeds)]
    states = [run_state(run_dir, cfg) for cfg, run_dir in runs]
    print(f"rims-rl demo: {', '.join(cores)} x seeds {', '.join(map(str, seeds))} on {base['env']}, "
          f"{base['timesteps']} steps each, results under {logdir}")
    for (cfg, run_dir), state in zip(runs, states):
        if state == "done":
            print(f"{run_dir}: already trained, reusing {run_dir / FINAL_MODEL}")
    to_train = [(cfg, run_dir, state) for (cfg, run_dir), state in zip(runs, states) if state != "done"]
    if len(to_train) > 1 and (workers or os.cpu_count() or 1) > 1:
        from agents.experiments.sweep.grid import PlannedRun
        from agents.experiments.sweep.driver import run_planned  # Ray: only when runs train side by side

        print(f"training {len(to_train)} runs side by side on Ray (output of each in <run dir>/train.log)")
        run_planned([PlannedRun(cfg, run_dir.resolve(), state) for cfg, run_dir, state in to_train],
                    workers=workers, progress=progress)
    else:
        for cfg, run_dir, state in to_train:
            print(f"training {cfg['core']} (seed {cfg['seed']}) -> {run_dir}")
            train_run(cfg, run_dir, resume=state == "resume", progress=progress)
    for _, run_dir in runs:
        evaluate_run(run_dir, shifts=ladder, episodes=episodes, quiet=True)
        print(f"evaluated {run_dir}: {run_dir / EVAL_DIR / 'results.csv'}")
    summary = write_comparison([r for _, r in runs], out=Path(logdir) / "compare", reps=reps, quiet=True)
    out = Path(logdir)
    print(f"\nresults: per run {out}/<env>/<label>/seed<N>/eval/results.csv (+ returns.png); "
          f"comparison {out / 'compare' / 'compare.csv'}, {out / 'compare' / 'improvement.csv'}, "
          f"every run's scores {out / 'compare' / 'scores.csv'}")
    print(f"plot: {out / 'compare' / 'compare.png'}")
    rims_runs = [r for cfg, r in runs if cfg["core"] == "rims"]
    if rims_runs:
        print(f"an episode with the RIMs activation strip: rims-rl record --model {rims_runs[0]}")
    print(f"TensorBoard curves: tensorboard --logdir {out}")
    print(report_line(*write_study_report(out, reps=reps)))
    line = study_line()
    if line:
        print(line)
    return summary


def study_line() -> str | None:
    """The line naming the newest committed study report (None outside a checkout that has one)."""
    return next((f"{what}: {path}" for path, what in STUDY_REPORTS if path.is_file()), None)
