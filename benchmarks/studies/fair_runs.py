"""The fair study's published runs (docs/results/fair/runs): which are missing, and publishing finished ones.

    python benchmarks/studies/fair_runs.py missing docs/results/fair/runs     # "env label seed seed ..." lines
    python benchmarks/studies/fair_runs.py publish $LOGDIR/runs docs/results/fair/runs

A published run keeps its ``config.yaml`` and its evaluation (``eval/results.csv`` and ``results.json``
without the per-episode records), never a model, so that ``rims-rl compare`` and ``report`` regenerate the
study from git alone and a fresh machine trains only the runs that are not published yet.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.experiments.files import atomic_write_text  # noqa: E402
from agents.experiments.runs import CONFIG_FILE, EVAL_DIR, FINAL_MODEL, env_dirname, find_run_dirs  # noqa: E402
from agents.experiments.sweep.grid import grid_jobs, job_configs, merge_grid, read_grid_file  # noqa: E402

GRID = Path(__file__).with_name("fair.yaml")


def published(out: Path) -> set[tuple[str, str, int]]:
    """(env dir name, label, seed) of every run published under ``out``."""
    done = set()
    for run in out.glob(f"*/*/seed*/{EVAL_DIR}/results.json"):
        seed_dir = run.parent.parent
        done.add((seed_dir.parent.parent.name, seed_dir.parent.name, int(seed_dir.name.removeprefix("seed"))))
    return done


def missing(out: Path) -> list[str]:
    """One line per (env, label) of the study grid with the seeds not published yet: "env label s1 s2 ..."."""
    grid = merge_grid(read_grid_file(GRID))
    done = published(out)
    lines = []
    for job in grid_jobs(grid):
        for variant, _ in job_configs(grid, job):
            seeds = [s for s in grid.seeds or [0] if (env_dirname(job.env), variant.label, s) not in done]
            if seeds:
                lines.append(f"{job.env} {variant.label} {' '.join(map(str, seeds))}")
    return lines


def publish(logdir: Path, out: Path) -> int:
    """Copy every finished, evaluated run under ``logdir`` into ``out`` (config and evaluation only)."""
    count = 0
    for run in find_run_dirs([logdir]):
        results = run / EVAL_DIR / "results.json"
        if not (run / FINAL_MODEL).is_file() or not results.is_file():
            continue
        target = out / run.relative_to(logdir)
        (target / EVAL_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / CONFIG_FILE, target / CONFIG_FILE)
        shutil.copyfile(run / EVAL_DIR / "results.csv", target / EVAL_DIR / "results.csv")
        data = json.loads(results.read_text())
        for row in data["results"]:
            row.pop("episode_records", None)
        atomic_write_text(target / EVAL_DIR / "results.json", json.dumps(data, indent=1))
        count += 1
    print(f"published {count} runs into {out}")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("missing").add_argument("out", type=Path)
    p = sub.add_parser("publish")
    p.add_argument("logdir", type=Path)
    p.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.what == "missing":
        print("\n".join(missing(args.out)))
    else:
        publish(args.logdir, args.out)


if __name__ == "__main__":
    main()
