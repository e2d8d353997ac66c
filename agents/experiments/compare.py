"""Compare runs (cores x seeds): IQM return per shift level with 95% stratified-bootstrap CIs.

Each run contributes the mean returns of its ``eval/results.json``. For one env, core and shift
level, the score matrix is ``[runs, tasks]`` where the tasks are the shift settings at that level
(level 0: the unshifted setting alone). The IQM is rliable's ``aggregate_iqm`` (25% trimmed mean
over all runs and tasks); its CI is the percentile interval of a stratified bootstrap that
resamples runs with replacement independently within each task (Agarwal et al. 2021). Retention
is aggregated the same way from per-run retention (setting mean / the run's unshifted mean).
With one run per core the CI has zero width: it measures seed variation and there is none.

Output columns (compare.csv): env, core, shift, runs, level, tasks, iqm_return, ci95_low,
ci95_high, iqm_retention, retention_ci95_low, retention_ci95_high. Rows with ``shift == "all"``
aggregate every shift at a level; the others follow one shift up its ladder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rliable.metrics import aggregate_iqm
from scipy.stats import trim_mean

from agents.experiments.config import UserError
from agents.experiments.evaluation import format_number, read_results, table_console, write_csv_json
from agents.experiments.runs import EVAL_DIR, read_run_config

COMPARE_COLUMNS = (
    "env", "core", "shift", "runs", "level", "tasks", "iqm_return", "ci95_low", "ci95_high",
    "iqm_retention", "retention_ci95_low", "retention_ci95_high",
)


def stratified_bootstrap_ci(
    scores: np.ndarray, reps: int = 2000, seed: int = 0, confidence: float = 0.95,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float]:
    """Percentile CI of the IQM of ``scores [runs, tasks]``, resampling runs within each task.

    ``statistic`` maps resampled scores ``[reps, runs, tasks]`` to ``[reps]`` (default: IQM).
    """
    scores = np.asarray(scores, dtype=np.float64)
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = scores[idx, np.arange(tasks)[None, None, :]]  # [reps, runs, tasks]
    if statistic is None:
        values = trim_mean(resampled.reshape(reps, -1), proportiontocut=0.25, axis=1)
    else:
        values = statistic(resampled)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _load_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Per run: env, core, seed, {(shift, level): mean_return}, and the unshifted mean."""
    runs = []
    for run_dir in run_dirs:
        cfg = read_run_config(run_dir)
        data = read_results(Path(run_dir) / EVAL_DIR / "results.json")
        scores = {(r["shift"], int(r["level"])): float(r["mean_return"]) for r in data["results"]}
        if ("none", 0) not in scores:
            raise UserError(f"{run_dir}: results.json has no unshifted row (shift none, level 0)")
        runs.append({"dir": str(run_dir), "env": cfg["env"], "core": cfg["core"], "seed": cfg["seed"],
                     "scores": scores, "config": cfg})
    _check_same_experiment(runs)
    return runs


def _check_same_experiment(runs: list[dict[str, Any]]) -> None:
    """Runs of one env and core must differ in the seed only (else they are not seeds of one condition)."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str, int], str] = {}
    for run in runs:
        key = (run["env"], run["core"], run["seed"])
        if key in seen:
            raise UserError(f"runs {seen[key]} and {run['dir']} have the same env, core and seed; "
                            f"compare the runs of one experiment at a time")
        seen[key] = run["dir"]
        ref = first.setdefault((run["env"], run["core"]), run)
        differ = sorted(k for k in set(ref["config"]) | set(run["config"])
                        if k != "seed" and ref["config"].get(k) != run["config"].get(k))
        if differ:
            raise UserError(f"runs {ref['dir']} and {run['dir']} ({run['core']}) differ in {', '.join(differ)}, "
                            f"not only in the seed; compare the runs of one experiment at a time")


def _aggregate(scores: np.ndarray, base: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    """IQM and CIs of ``scores [runs, tasks]`` and of the retention ``scores / base`` (``base [runs, 1]``)."""
    low, high = stratified_bootstrap_ci(scores, reps=reps, seed=seed)
    row: dict[str, Any] = {"iqm_return": float(aggregate_iqm(scores)), "ci95_low": low, "ci95_high": high}
    if (base == 0).any():
        row.update(iqm_retention=None, retention_ci95_low=None, retention_ci95_high=None)
    else:
        retention = scores / base
        r_low, r_high = stratified_bootstrap_ci(retention, reps=reps, seed=seed)
        row.update(iqm_retention=float(aggregate_iqm(retention)), retention_ci95_low=r_low,
                   retention_ci95_high=r_high)
    return row


def compare_runs(run_dirs: list[Path], reps: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Summary rows (COMPARE_COLUMNS) for every env, core, shift and level of ``run_dirs``.

    ``shift == "all"`` rows aggregate every shift at a level (the tasks); the other rows follow one
    shift up its ladder (level 0 = the unshifted setting). Only settings evaluated in every run of
    an env are used, so all cores face the same tasks.
    """
    runs = _load_runs(run_dirs)
    summary = []
    for env in sorted({r["env"] for r in runs}):
        env_runs = [r for r in runs if r["env"] == env]
        common = set.intersection(*(set(r["scores"]) for r in env_runs))
        levels = sorted({level for _, level in common})
        # shifts in the order of the first run's results (the env's order), not hash order
        shifts = list(dict.fromkeys(name for name, level in env_runs[0]["scores"]
                                    if (name, level) in common and name != "none"))
        groups = [("all", level, sorted(s for s in common if s[1] == level)) for level in levels]
        for name in shifts:
            groups.append((name, 0, [("none", 0)]))
            groups += [(name, level, [(name, level)]) for level in levels if (name, level) in common]
        for core in sorted({r["core"] for r in env_runs}):
            core_runs = [r for r in env_runs if r["core"] == core]
            base = np.array([[r["scores"][("none", 0)]] for r in core_runs])
            for shift, level, tasks in groups:
                scores = np.array([[r["scores"][t] for t in tasks] for r in core_runs])
                summary.append({"env": env, "core": core, "shift": shift, "runs": len(core_runs), "level": level,
                                "tasks": len(tasks), **_aggregate(scores, base, reps, seed)})
    return summary


def write_compare(summary: list[dict[str, Any]], out_dir: str | os.PathLike, run_dirs: list[Path]) -> tuple[Path, Path]:
    """Write ``compare.csv`` and ``compare.json`` into ``out_dir``."""
    return write_csv_json(out_dir, "compare", COMPARE_COLUMNS, summary,
                          {"runs": [str(r) for r in run_dirs], "summary": summary})


def _cell(row: dict[str, Any]) -> str:
    text = format_number(row["iqm_return"])
    if row["runs"] > 1:
        text += f" [{format_number(row['ci95_low'])}, {format_number(row['ci95_high'])}]"
    return text


def print_compare_table(summary: list[dict[str, Any]]) -> None:
    """Per env: a table of every shift pooled per level, then one of each shift's ladder.

    Cells are ``IQM [95% CI]`` (the CI only with more than one run per core).
    """
    from rich.table import Table

    console = table_console()
    for env in sorted({s["env"] for s in summary}):
        rows = [s for s in summary if s["env"] == env]
        levels = sorted({s["level"] for s in rows})
        top = max(levels)
        single = all(s["runs"] == 1 for s in rows)
        what = "IQM return" if single else "IQM return [95% stratified bootstrap CI]"
        note = ("one run per core, so no CI across seeds (per-episode CIs are in each run's eval/results.csv); "
                "train several seeds for CIs" if single else "")
        table = Table(title=f"{env}: {what} by shift level",
                      caption="level L pools every shift at level L (IQM over runs x shifts); "
                              "unshifted = training conditions" + (f"; {note}" if note else ""))
        table.add_column("core")
        table.add_column("runs", justify="right")
        for level in levels:
            table.add_column("unshifted" if level == 0 else f"level {level}", justify="right")
        if top > 0:
            table.add_column(f"retention @ level {top}", justify="right")
        for core in sorted({s["core"] for s in rows}):
            cells = {s["level"]: s for s in rows if s["core"] == core and s["shift"] == "all"}
            line = [core, str(cells[levels[0]]["runs"]), *(_cell(cells[level]) for level in levels)]
            if top > 0:
                line.append(format_number(cells[top]["iqm_retention"]))
            table.add_row(*line)
        console.print(table)
        shifts = list(dict.fromkeys(s["shift"] for s in rows if s["shift"] != "all"))
        if not shifts:
            continue
        table = Table(title=f"{env}: {what} along each shift")
        table.add_column("shift")
        table.add_column("core")
        for level in levels:
            table.add_column(f"level {level}", justify="right")
        for shift in shifts:
            for core in sorted({s["core"] for s in rows}):
                cells = {s["level"]: s for s in rows if s["core"] == core and s["shift"] == shift}
                table.add_row(shift, core, *(_cell(cells[level]) if level in cells else "" for level in levels))
        console.print(table)
