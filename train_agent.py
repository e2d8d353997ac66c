"""rims-rl command line: train, evaluate on shifted environments, compare runs, record episodes.

With no arguments it runs the main job (``demo``): a small RIMs agent and an LSTM agent on the
built-in MiniGrid/BabyAI distractor task, evaluated across the distractor ladder and compared.
This file only parses arguments; the work is done in ``agents.experiments.commands``.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Sequence

from agents.experiments.config import (CORES, DEFAULT_EPISODES, DEFAULT_PRESET, UserError, first_line, get_value,
                                      list_presets, load_preset)
from agents.experiments.devices import DEVICES

PROG = "rims-rl"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show ``(default: X)`` for every option that has a default (options read from the config say so)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool) and not action.default:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ONE line on stderr (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _from_config(help_text: str, key: str) -> str:
    """Help for an option whose default comes from the config, quoting the default preset's value."""
    value = get_value(load_preset(DEFAULT_PRESET), key)
    shown = "the built-in distractor task" if key == "env" and value is None else ("none" if value is None else value)
    return f"{help_text} (default: the config's `{key}`; {DEFAULT_PRESET} preset: {shown})"


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=100)


def _add_device(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--device", metavar="|".join(DEVICES), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The ``rims-rl`` parser with the subcommands train, sweep, evaluate, compare, report, record, demo, presets."""
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    presets = ", ".join(list_presets())

    p = sub.add_parser("train", help="train agents (one run per core and seed)", formatter_class=_Formatter,
                       description=_wrap("Train recurrent PPO agents. Each core x seed gets a run dir "
                                   "<logdir>/<env>/<core>/seed<N>/ with config.yaml, checkpoints, TensorBoard "
                                   "events and model.zip. Ctrl-C saves a checkpoint; --resume continues it."))
    p.add_argument("--config", help=f"a preset ({presets}) or a YAML file (default: {DEFAULT_PRESET})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, nested with dots (e.g. ppo.learning_rate=1e-3, cores.rims.k=3); "
                        "repeatable")
    p.add_argument("--env", help=_from_config("environment id", "env"))
    p.add_argument("--core", nargs="+", choices=CORES, help=_from_config("recurrent core(s), one run each", "core"))
    p.add_argument("--seed", nargs="+", type=int, help=_from_config("seed(s), one run each", "seed"))
    p.add_argument("--timesteps", type=int, help=_from_config("environment steps per run", "timesteps"))
    p.add_argument("--n-envs", type=int, help=_from_config("parallel environments", "n_envs"))
    p.add_argument("--shifts", help=_from_config("training-time shifts, e.g. distractors=1", "shifts"))
    p.add_argument("--logdir", default="runs", help="root of the run dirs")
    p.add_argument("--eval-freq", type=int, help=_from_config("periodic evaluation every N steps, 0 = off; "
                                                              "the best model is kept as best_model.zip", "eval.freq"))
    p.add_argument("--eval-episodes", type=int, help=_from_config("episodes per periodic evaluation", "eval.episodes"))
    p.add_argument("--eval-shifts", help=_from_config("shifts of the periodic evaluation", "eval.shifts"))
    p.add_argument("--checkpoint-freq", type=int,
                   help=_from_config("checkpoint every N steps, 0 = only at the end", "checkpoint_freq"))
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run dir from its last checkpoint (same "
                   "config, step count and optimizer state; --timesteps may raise the budget, written to its config.yaml, "
                   "or stop this resume earlier, but not below the steps done)")
    _add_device(p, _from_config("torch device: auto = CUDA when torch sees a GPU, else cpu; with --resume it "
                                "only says where to continue", "device"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("sweep", help="many runs at once on Ray: envs x cores x seeds", formatter_class=_Formatter,
                       description=_wrap("Train every env x core x seed as one Ray task each, side by side (one CPU "
                                   "and one torch thread per run), into ordinary run dirs <logdir>/<env>/<core>/seed<N>/ "
                                   "with their output in train.log. Re-running the same command skips finished runs and "
                                   "resumes interrupted ones; Ctrl-C checkpoints the running runs. A failed run is "
                                   "retried from its checkpoint, and never stops the others. See docs/sweep.md."))
    p.add_argument("grid", nargs="?", metavar="GRID.yaml",
                   help="a grid file (keys: envs or tasks, cores, seeds, config, overrides, timesteps); flags override it")
    p.add_argument("--env", nargs="+", help=_from_config("environment id(s)", "env"))
    p.add_argument("--core", nargs="+", help=_from_config(f"recurrent core(s) ({', '.join(CORES)})", "core"))
    p.add_argument("--seed", nargs="+", type=int, help=_from_config("seed(s)", "seed"))
    p.add_argument("--config", help=f"a preset ({presets}) or a YAML file (default: the grid file's, else "
                                    f"{DEFAULT_PRESET})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; applied after the grid file's overrides)")
    p.add_argument("--timesteps", type=int, help=_from_config("environment steps per run", "timesteps"))
    p.add_argument("--logdir", default="runs", help="root of the run dirs (on a cluster: a path every node sees)")
    p.add_argument("--evaluate", action="store_true",
                   help="evaluate each run after training (the config's eval.sweep), then compare per env")
    p.add_argument("--episodes", type=int, help="episodes per evaluation setting (default: the config's eval.episodes)")
    p.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all CPU cores)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto, HOST:6379) instead of starting one")
    p.add_argument("--device", metavar="auto|cpu|cuda",
                   help=_from_config("torch device of the runs; with cuda or auto on GPUs Ray gives each run "
                                     "--gpus-per-run GPUs", "device"))
    p.add_argument("--gpus-per-run", type=float, help="GPUs (a fraction shares one) per run (default: 1 when the "
                                                      "device is CUDA, else 0)")
    p.add_argument("--retries", type=int, default=1, help="retries of a run that raises or whose worker dies")
    p.add_argument("--no-progress", action="store_true", help="no live status line")

    p = sub.add_parser("evaluate", help="evaluate a model across shift levels", formatter_class=_Formatter,
                       description=_wrap("Evaluate a model on the unshifted env and on each shift setting, on paired "
                                   "episodes (episode i of every setting and model is reset with seed SEED+i). "
                                   "Writes results.csv / results.json (return, success rate, normalized score "
                                   "against a cached random-policy baseline, 95% CIs; per-episode records), "
                                   "returns.png and TensorBoard scalars."))
    p.add_argument("--model", required=True, help="a model file or a run dir (uses model.zip, else the checkpoint)")
    p.add_argument("--shifts", nargs="+", default=["all"], metavar="SPEC",
                   help="settings: all, none, a shift name (every level) or name=level[,name=level]")
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                   help=f"episodes per setting ({DEFAULT_EPISODES}: a success rate's 95%% CI half-width <= 0.05)")
    p.add_argument("--seed", type=int, default=1000, help="reset seed of episode 0 (episode i: SEED+i)")
    p.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampled ones")
    p.add_argument("--n-envs", type=int, default=64, help="sub-envs stepped at once (one batched predict per step)")
    p.add_argument("--out", help="output dir (default: <run dir>/eval)")
    p.add_argument("--env", help="environment id (default: the run's config.yaml)")
    p.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                   help="torch device (auto = CUDA when torch sees a GPU, else cpu)")

    p = sub.add_parser("compare", help="compare evaluated runs: rliable aggregates with bootstrap CIs",
                       formatter_class=_Formatter,
                       description=_wrap("Aggregate evaluated runs per env and core with rliable: IQM, mean, median and "
                                   "optimality gap of success rate, normalized score and return per shift level with "
                                   "95% stratified-bootstrap CIs (none with 1 seed), probability of improvement of "
                                   "each core over each other, performance profiles; writes compare.csv/json, "
                                   "improvement.csv, compare.png and profiles.png."))
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run dirs, or dirs searched for run dirs")
    p.add_argument("--out", help="output dir (default: DIR/compare for one DIR holding runs, else <common parent of the runs>/compare)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    p = sub.add_parser("report", help="write the study report (HTML + Markdown) of evaluated runs",
                       formatter_class=_Formatter,
                       description=_wrap("Write report.html (self-contained, images embedded) and report.md (PNGs "
                                   "beside it): what was run, learning curves, each shift's ladder, pooled aggregates, "
                                   "probability of improvement, performance profiles, the random baseline, caveats."))
    p.add_argument("dir", metavar="DIR", help="a dir holding evaluated run dirs (e.g. runs/demo)")
    p.add_argument("--out", help="output dir (default: DIR)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (if compare must run first)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--study", metavar="STUDY.yaml",
                   help="a study (grid) file: its primary comparison (key primary) is shown first")
    p.add_argument("--reference", metavar="CORE", help="the core the verdict measures every other core against "
                                                      "(default: lstm where compared)")

    p = sub.add_parser("record", help="record one episode with the RIMs activation strip",
                       formatter_class=_Formatter,
                       description=_wrap("Play one episode and write it as GIF or MP4; under each frame a strip shows "
                                   "which RIMs were active over the last steps (rows = RIMs, right = now)."))
    p.add_argument("--model", required=True, help="a model file or a run dir")
    p.add_argument("--out", help="a .gif or .mp4 path (default: <run dir>/episode.gif)")
    p.add_argument("--shifts", help="shifts to apply, e.g. distractors=2")
    p.add_argument("--seed", type=int, default=1000, help="seed of the env")
    p.add_argument("--deterministic", action="store_true", help="greedy actions")
    p.add_argument("--max-steps", type=int, default=500, help="stop after this many steps")
    p.add_argument("--fps", type=int, default=8, help="frames per second of the video")
    p.add_argument("--env", help="environment id (default: the run's config.yaml)")
    p.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                   help="torch device (auto = CUDA when torch sees a GPU, else cpu)")

    p = sub.add_parser("demo", help="the main job (also what runs with no arguments)", formatter_class=_Formatter,
                       description=_wrap("Train a RIMs and an LSTM agent on the built-in distractor task, evaluate both "
                                   "across the shift ladder, compare them, and print where everything is. Re-running "
                                   "reuses finished runs and resumes interrupted ones."))
    p.add_argument("--config", default="demo", help=f"a preset ({presets}) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--cores", nargs="+", choices=CORES, default=["rims", "lstm"], help="cores to compare")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds per core")
    p.add_argument("--logdir", default="runs/demo", help="where the runs and the comparison go")
    p.add_argument("--shifts", nargs="+", metavar="SPEC", help="evaluation settings (default: the config's eval.sweep)")
    p.add_argument("--episodes", type=int, help="episodes per setting (default: the config's eval.episodes)")
    p.add_argument("--workers", type=int, help="runs trained side by side on a local Ray instance, as `sweep` "
                                               "does (default: all CPU cores; 1 = one after another in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("presets", help="list the presets, or print one", formatter_class=_Formatter)
    p.add_argument("name", nargs="?", help="a preset to print as YAML")
    return parser


def _dispatch(args: argparse.Namespace) -> None:
    from agents.experiments import commands as experiment
    from agents.experiments.train import train

    if args.command == "train":
        train(
            config=args.config, overrides=args.overrides, cores=args.core, seeds=args.seed, logdir=args.logdir,
            resume=args.resume, progress=not args.no_progress, env=args.env, timesteps=args.timesteps,
            n_envs=args.n_envs, shifts=args.shifts, checkpoint_freq=args.checkpoint_freq,
            eval__freq=args.eval_freq, eval__episodes=args.eval_episodes, eval__shifts=args.eval_shifts,
            device=args.device)
    elif args.command == "sweep":
        from agents.experiments.sweep import merge_grid, read_grid_file, sweep

        grid = merge_grid(read_grid_file(args.grid) if args.grid else None, envs=args.env, cores=args.core,
                          seeds=args.seed, config=args.config, overrides=args.overrides, timesteps=args.timesteps)
        sweep(grid, logdir=args.logdir, evaluate=args.evaluate, episodes=args.episodes, workers=args.workers,
              address=args.address, device=args.device, gpus_per_run=args.gpus_per_run, retries=args.retries,
              progress=not args.no_progress)
    elif args.command == "evaluate":
        experiment.evaluate(args.model, shifts=args.shifts, episodes=args.episodes, seed=args.seed,
                            deterministic=args.deterministic, out=args.out, env=args.env, n_envs=args.n_envs,
                            device=args.device)
    elif args.command == "compare":
        experiment.compare(args.runs, out=args.out, reps=args.reps, seed=args.seed)
    elif args.command == "report":
        experiment.report(args.dir, out=args.out, reps=args.reps, seed=args.seed, study=args.study,
                          reference=args.reference)
    elif args.command == "record":
        experiment.record(args.model, out=args.out, shifts=args.shifts, seed=args.seed,
                          deterministic=args.deterministic, max_steps=args.max_steps, fps=args.fps, env=args.env,
                          device=args.device)
    elif args.command == "demo":
        experiment.demo(config=args.config, overrides=args.overrides, cores=args.cores, seeds=args.seeds,
                        logdir=args.logdir, shifts=args.shifts, episodes=args.episodes,
                        progress=not args.no_progress, workers=args.workers)
    elif args.command == "presets":
        experiment.show_presets(args.name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rims-rl`` / ``python train_agent.py``; returns the exit code.

    0 done; 1 training diverged (non-finite loss) or some runs of a sweep failed; 2 user error or an OS error such as a full disk,
    a read-only dir or too little memory (one line on stderr); 130 (SIGINT) or 143 (SIGTERM):
    training interrupted after saving a checkpoint.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv or ["demo"])
    if args.command is None:
        build_parser().print_help()
        return 2
    from agents.experiments.sweep import SweepFailed
    from agents.experiments.train import Interrupted, TrainingDiverged

    try:
        _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except (UserError, ValueError) as e:
        print(f"{PROG}: error: {first_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (`rims-rl presets | head -0`)
        _silence_stdout()
        print(f"{PROG}: error: output pipe closed", file=sys.stderr)
        return 2
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"{PROG}: error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: out of memory; use smaller values (--reps, --episodes, --n-envs, network sizes)",
              file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{PROG}: error: input nested too deeply (a config or file that refers to itself?)", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside training (setup, evaluation): nothing to save
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (TrainingDiverged, SweepFailed) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail on a closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
