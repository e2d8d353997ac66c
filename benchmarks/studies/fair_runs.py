"""The fair study's steps after tuning (docs/results/fair/PLAN.md): its grid, its published runs, the
levelling-off check.

    python benchmarks/studies/fair_runs.py grid docs/results/fair/tuning/PickupDistractors-v0   # writes fair.yaml
    python benchmarks/studies/fair_runs.py missing docs/results/fair/runs     # "env label seed seed ..." lines
    python benchmarks/studies/fair_runs.py publish $LOGDIR/runs docs/results/fair/runs
    python benchmarks/studies/fair_runs.py levelled docs/results/fair/runs    # the levelling-off table
    python benchmarks/studies/fair_runs.py compute docs/results/fair         # CPU-hours, spent and still to go
    python benchmarks/studies/fair_runs.py parameters                        # core and whole-policy parameters
    python benchmarks/studies/fair_runs.py resumed docs/results/fair/runs     # runs interrupted and resumed

``grid`` copies each label's tuned values verbatim from the tuning's tuned.yaml into the study grid, once
every label has its full budget of trials. A published run keeps its ``config.yaml``, its evaluation
(``eval/results.csv`` and ``results.json`` without the per-episode records) and its training log as
``curves.csv``, never a model or event file, so that ``rims-rl compare`` and ``report`` regenerate the
study from git alone and a fresh machine trains only the runs that are not published yet.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from scipy.stats import trim_mean  # noqa: E402

from agents.experiments.curves import (CURVES_FILE, read_scalars, training_events,  # noqa: E402
                                       training_wall_seconds, write_curves_csv)
from agents.experiments.files import atomic_write_text  # noqa: E402
from agents.experiments.runs import (CONFIG_FILE, EVAL_DIR, FINAL_MODEL, env_dirname, find_run_dirs,  # noqa: E402
                                     read_num_timesteps, read_run_config)
from agents.experiments.sweep.grid import (grid_jobs, is_evaluated, job_configs, merge_grid,  # noqa: E402
                                          read_grid_file)
from agents.experiments.tune.report import read_trials  # noqa: E402
from agents.experiments.tune.storage import TRIALS_FILE, TUNED_FILE  # noqa: E402
from agents.experiments.tune.tuned import read_tuned  # noqa: E402
from rims_rl.errors import UserError  # noqa: E402

GRID = Path(__file__).with_name("fair.yaml")
TRIALS_PER_LABEL = 16
SEEDS = list(range(10))
EPISODES = 200
LEVELLED_RISE = 0.02  # the training return's IQM may rise by less than this over the last 20% of training
TAIL = 0.2
# the final runs' tasks beyond the tuned one (PLAN.md, "Tasks and budgets"); the labels, the tuned task and the
# primary comparison are the tuning grid's
TUNE_GRID = Path(__file__).with_name("fair_tune.yaml")
TUNING_SEEDS = 2  # fair.sh tune's --seeds-per-trial: a trial's seconds are the sum over this many runs
PARALLEL = 2  # runs side by side on the study's 2-core machine (PLAN.md, "Compute estimate")
OTHER_TASKS = [{"env": "MiniGrid-DoorKey-5x5-v0", "timesteps": 150000},
               {"env": "MemoryDistractors-v0", "timesteps": 400000}]

def _tuning_labels(tune_grid: dict) -> dict[str, dict]:
    """The tuning grid's labels: each of its ``cores`` as a label of that core, then its ``labels``."""
    labels = {core: {"core": core, "set": {}} for core in tune_grid.get("cores") or []}
    for name, variant in (tune_grid.get("labels") or {}).items():
        labels[name] = {"core": variant["core"], "set": dict(variant.get("set") or {})}
    return labels


def study_grid(tuning: Path, trials: int = TRIALS_PER_LABEL, tune_grid_file: Path = TUNE_GRID) -> dict:
    """The study grid: the tuning grid's labels, each with its tuned values from ``tuning/tuned.yaml``
    (verbatim), on the tuned task and OTHER_TASKS, seeds 0-9; UserError unless ``tuning/trials.csv`` holds
    exactly ``trials`` trials of every label (failed ones count) and tuned.yaml holds each label's best
    trial of that file."""
    tune_grid = yaml.safe_load(tune_grid_file.read_text())
    tuned = read_tuned(tuning, trials).values
    labels = _tuning_labels(tune_grid)
    for label, entry in labels.items():
        if label not in tuned:
            raise UserError(f"{tuning / TUNED_FILE} has no values for {label}")
        entry["set"].update(tuned[label])
    return {"config": tune_grid.get("config", "minigrid"), "seeds": SEEDS,
            "overrides": {"eval": {"episodes": EPISODES}}, "labels": labels,
            "tasks": [*tune_grid["tasks"], *OTHER_TASKS], "primary": tune_grid["primary"]}


def write_grid(tuning: Path, path: Path = GRID) -> Path:
    """Write the study grid (never over an existing one: it is committed before the final runs), after the
    sweep's own planning has accepted every run of it."""
    if path.exists():
        raise UserError(f"{path} exists; the study grid is written once, before the final runs")
    header = (f"# The fair study's final runs (docs/results/fair/PLAN.md), generated by\n"
              f"#   python benchmarks/studies/fair_runs.py grid {tuning}\n"
              f"# from {tuning / TUNED_FILE} (each label's best trial, values copied verbatim).\n"
              f"#   rims-rl sweep {path} --evaluate   (benchmarks/studies/fair.sh runs)\n")
    staging = path.with_name(f".{path.name}.checking")
    atomic_write_text(staging, header + yaml.safe_dump(study_grid(tuning), sort_keys=False))
    try:
        grid = merge_grid(read_grid_file(staging))
        for job in grid_jobs(grid):
            job_configs(grid, job)
    except BaseException:
        staging.unlink()
        raise
    os.replace(staging, path)
    return path


def published(out: Path) -> set[tuple[str, str, int]]:
    """(env dir name, label, seed) of every run published under ``out`` (config, evaluation and curves)."""
    done = set()
    for run in out.glob(f"*/*/seed*/{EVAL_DIR}/results.json"):
        seed_dir = run.parent.parent
        if (seed_dir / CONFIG_FILE).is_file() and (seed_dir / CURVES_FILE).is_file():
            done.add((seed_dir.parent.parent.name, seed_dir.parent.name, int(seed_dir.name.removeprefix("seed"))))
    return done


def finished(run: Path) -> bool:
    """True if ``run`` trained its whole budget and its evaluation after that is complete, with the episodes
    its config asks for."""
    try:
        meta = json.loads((run / EVAL_DIR / "results.json").read_text())
        cfg = read_run_config(run)
        return (is_evaluated(run, cfg["eval"]["episodes"]) and meta["num_timesteps"] >= cfg["timesteps"]
                and read_num_timesteps(run / FINAL_MODEL) >= cfg["timesteps"])
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return False


def missing(out: Path, grid_file: Path = GRID) -> list[str]:
    """One line per (env, label) of the study grid with the seeds not published yet: "env label s1 s2 ..."."""
    grid = merge_grid(read_grid_file(grid_file))
    done = published(out)
    lines = []
    for job in grid_jobs(grid):
        for variant, _ in job_configs(grid, job):
            seeds = [s for s in grid.seeds or [0] if (env_dirname(job.env), variant.label, s) not in done]
            if seeds:
                lines.append(f"{job.env} {variant.label} {' '.join(map(str, seeds))}")
    return lines


def publish(logdir: Path, out: Path) -> int:
    """Copy every finished, evaluated run under ``logdir`` into ``out`` (config, evaluation and curves, never a
    model or event file). Each copy is written beside its place and moved in whole, so an interrupted
    publish leaves no half-published run."""
    count = 0
    for run in find_run_dirs([logdir]):
        if not finished(run):
            continue
        target = out / run.relative_to(logdir)
        staging = target.with_name(f".{target.name}.publishing")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / EVAL_DIR).mkdir(parents=True)
        shutil.copyfile(run / CONFIG_FILE, staging / CONFIG_FILE)
        shutil.copyfile(run / EVAL_DIR / "results.csv", staging / EVAL_DIR / "results.csv")
        data = json.loads((run / EVAL_DIR / "results.json").read_text())
        for row in data["results"]:
            row.pop("episode_records", None)
        atomic_write_text(staging / EVAL_DIR / "results.json", json.dumps(data, indent=1))
        write_curves_csv(run, staging / CURVES_FILE)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        count += 1
    print(f"published {count} runs into {out}")
    return count


def levelled(out: Path) -> list[dict]:
    """Per env and label: the IQM over seeds of the training return at 80% and at the end of training
    (each run's curve interpolated onto the same steps), its rise, and whether it is below LEVELLED_RISE."""
    curves: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in find_run_dirs([out]):
        steps_values = read_scalars(run).get("rollout/ep_rew_mean")
        if steps_values is not None and len(steps_values[0]):
            env_label = (run.parent.parent.name, run.parent.name)
            curves.setdefault(env_label, []).append(steps_values)
    rows = []
    for (env, label), series in sorted(curves.items()):
        end = min(steps[-1] for steps, _ in series)
        at = [(1 - TAIL) * end, end]
        iqm = [float(trim_mean([np.interp(x, steps, values) for steps, values in series], 0.25)) for x in at]
        rise = iqm[1] - iqm[0]
        rows.append({"env": env, "label": label, "runs": len(series), "step_from": int(at[0]), "step_to": int(end),
                     "iqm_from": iqm[0], "iqm_to": iqm[1], "rise": rise, "levelled": rise < LEVELLED_RISE})
    return rows


def levelled_table(rows: list[dict]) -> str:
    """The levelling-off check as Markdown."""
    out = ["| env | label | runs | training return IQM at step | at the end | rise | "
           f"levelled off (< {LEVELLED_RISE}) |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['env']} | {r['label']} | {r['runs']} | {r['iqm_from']:.3f} ({r['step_from']}) | "
            f"{r['iqm_to']:.3f} ({r['step_to']}) | {round(r['rise'], 3) or 0.0:+.3f} | "
            f"{'yes' if r['levelled'] else 'no'} |" for r in rows]
    return "\n".join(out)


def resumed(out: Path) -> str:
    """Every published run that was interrupted and resumed from a checkpoint, as Markdown: the steps it
    resumed from (each later training log's first step less one rollout, the step its checkpoint held), and
    every run without a training log (whether it was resumed is not known). A resume restarts the training
    episodes' seeds, so such a run is not the run an uninterrupted one would have been."""
    lines = ["| env | label | seed | resumed from step |", "|---|---|---|---|"]
    unknown = []
    for run in find_run_dirs([out]):
        cfg = read_run_config(run)
        name = f"{cfg['env']} | {cfg.get('label') or cfg['core']} | {cfg['seed']}"
        first: dict[int, int] = {}
        for event in training_events(run):
            first[event.process] = min(first.get(event.process, event.step), event.step)
        if not first:
            unknown.append(f"| {name} | no training log |")
        elif len(first) > 1:
            rollout = cfg["n_envs"] * cfg["ppo"]["n_steps"]
            lines.append(f"| {name} | {', '.join(f'{first[p] - rollout:,}' for p in sorted(first)[1:])} |")
    if len(lines) + len(unknown) == 2:
        return "Every published run trained in one process."
    return "\n".join(lines + unknown)


def _run_seconds(run: Path) -> float:
    """A published or local run's training seconds (0 where it has no training events)."""
    cfg = read_run_config(run)
    return training_wall_seconds(run, cfg["n_envs"] * cfg["ppo"]["n_steps"]) or 0.0


def compute(study: Path, grid_file: Path = GRID, tune_grid_file: Path = TUNE_GRID) -> str:
    """The study's training CPU-hours as Markdown: the tuning's per label (trials.csv), the published final
    runs' per task and label, and an estimate for the final runs not published yet. The estimate takes the
    mean of the published runs of the same task and label, else the label's best tuning trial's seconds per
    step on the tuned task times the task's budget. Evaluation time is not counted."""
    tune_grid = yaml.safe_load(tune_grid_file.read_text())
    tuned_task = tune_grid["tasks"][0]
    rows, _ = read_trials(study / "tuning" / env_dirname(tuned_task["env"]) / TRIALS_FILE)
    per_step: dict[str, float] = {}
    lines = ["| part | label | runs | CPU-hours |", "|---|---|---|---|"]
    for label in _tuning_labels(tune_grid):
        trials = [r for r in rows if r["label"] == label]
        seconds = sum(float(r["seconds"] or 0) for r in trials)
        lines.append(f"| tuning, {tuned_task['env']} ({len(trials)} trials) | {label} | "
                     f"{len(trials) * TUNING_SEEDS} | {seconds / 3600:.2f} |")
        scored = [r for r in trials if r["score"] is not None]
        if scored:
            best = max(scored, key=lambda r: (r["score"], -r["trial"]))
            per_step[label] = float(best["seconds"]) / TUNING_SEEDS / tuned_task["timesteps"]
    spent = {}
    for run in sorted(c.parent for c in (study / "runs").glob(f"*/*/seed*/{CONFIG_FILE}")):
        spent.setdefault((run.parent.parent.name, run.parent.name), []).append(_run_seconds(run))
    for (env, label), seconds in sorted(spent.items()):
        lines.append(f"| final runs, {env} | {label} | {len(seconds)} | {sum(seconds) / 3600:.2f} |")
    total = sum(float(r["seconds"] or 0) for r in rows) + sum(sum(s) for s in spent.values())
    lines += [f"| **spent** | | | **{total / 3600:.1f}** |", "",
              "CPU-hours: each run's training wall time (one CPU thread per run, two runs side by side), "
              "without set-up and evaluation; on a shared machine an upper bound."]
    if not grid_file.exists():
        return "\n".join(lines + ["", f"No study grid yet ({grid_file.name}): no estimate of the final runs."])
    grid = merge_grid(read_grid_file(grid_file))
    todo = 0.0
    for line in missing(study / "runs", grid_file):
        env, label, *seeds = line.split()
        done = spent.get((env_dirname(env), label))
        budget = next(job.timesteps for job in grid.jobs or [] if job.env == env)
        each = np.mean(done) if done else per_step.get(label, np.nan) * budget
        todo += each * len(seeds)
    lines += ["", f"Final runs still to train: about {todo / 3600:.1f} CPU-hours, {todo / 3600 / PARALLEL:.1f} "
              f"wall-clock hours at {PARALLEL} runs at a time (evaluation not counted)."]
    return "\n".join(lines)


def parameters(grid_file: Path = GRID) -> str:
    """Every label's trainable parameters per task as Markdown: the recurrent core's (what ``match: params``
    matches) and the whole policy's (encoder, core, heads), with the whole policy's ratio to ``rims``'s."""
    from agents.experiments.train import build_policy_for
    from agents.sizing import core_parameters, trainable_parameters

    grid = merge_grid(read_grid_file(grid_file))
    lines = ["| env | label | core | core parameters | policy parameters | policy / rims's |",
             "|---|---|---|---|---|---|"]
    for job in grid_jobs(grid):
        counts = {}
        for variant, cfg in job_configs(grid, job):
            policy = build_policy_for(cfg)
            counts[variant.label] = (cfg["core"], core_parameters(policy), trainable_parameters(policy))
        rims = counts.get("rims", (None, None, None))[2]
        lines += [f"| {job.env} | {label} | {core} | {core_n:,} | {total:,} | "
                  f"{f'{total / rims:.2f}' if rims else '-'} |" for label, (core, core_n, total) in counts.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    grid = argparse.ArgumentParser(add_help=False)
    grid.add_argument("--grid", type=Path, default=GRID, help="the study grid (default: %(default)s)")
    sub.add_parser("grid", parents=[grid]).add_argument("tuning", type=Path,
                                                        help="the tuning's env dir (tuned.yaml, trials.csv)")
    sub.add_parser("missing", parents=[grid]).add_argument("out", type=Path)
    p = sub.add_parser("publish")
    p.add_argument("logdir", type=Path)
    p.add_argument("out", type=Path)
    sub.add_parser("levelled").add_argument("out", type=Path)
    sub.add_parser("resumed").add_argument("out", type=Path)
    sub.add_parser("parameters", parents=[grid])
    sub.add_parser("compute", parents=[grid]).add_argument("study", type=Path,
                                                           help="the study's folder (tuning/, runs/)")
    args = parser.parse_args()
    try:
        if args.what == "grid":
            print(f"wrote {write_grid(args.tuning, args.grid)}")
        elif args.what == "missing":
            print("\n".join(missing(args.out, args.grid)))
        elif args.what == "publish":
            publish(args.logdir, args.out)
        elif args.what == "compute":
            print(compute(args.study, args.grid))
        elif args.what == "parameters":
            print(parameters(args.grid))
        elif args.what == "resumed":
            print(resumed(args.out))
        else:
            print(levelled_table(levelled(args.out)))
    except UserError as e:
        sys.exit(f"fair_runs.py: {e}")


if __name__ == "__main__":
    main()
