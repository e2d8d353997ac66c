"""A study's outputs from evaluated run dirs: the comparison files (:func:`write_comparison`) and the
report (:func:`write_study_report`). The ``compare``, ``report``, ``demo`` and ``sweep`` commands all
write them through these two functions."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from agents.checks import check_dir, check_seed
from agents.experiments import compare
from agents.experiments.curves import CURVE_REPS
from agents.experiments.files import atomic_write_bytes
from agents.experiments.findings import read_primary, verdict
from agents.experiments.plots import plot_compare, plot_profiles
from agents.experiments.comparison_files import read_comparison, write_compare
from agents.experiments.compare_tables import print_compare_table
from agents.experiments.report import REPORT_FILES, write_report
from agents.experiments.runs import EVAL_DIR, find_run_dirs, is_run_dir
from rims_rl.errors import UserError

MAX_REPS = 100_000  # bootstrap resamples of `compare` (more only costs memory: 2,000 give stable CIs)
COMPARE_FILES = ("compare.csv", "compare.json", "improvement.csv", "scores.csv", "compare.png", "profiles.png")
COMPARE_TABLES = ("compare.csv", "improvement.csv", "scores.csv")  # copied beside a report written elsewhere


def default_compare_out(runs: Sequence[str | os.PathLike], run_dirs: list[Path]) -> Path:
    """``DIR/compare`` for one DIR holding runs, else ``<common parent of the runs>/compare``."""
    if len(runs) == 1 and not is_run_dir(runs[0]):
        return Path(runs[0]) / "compare"
    common = Path(os.path.commonpath([str(r.resolve()) for r in run_dirs]))
    return (common.parent if is_run_dir(common) else common) / "compare"


def write_comparison(runs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, reps: int = 2000,
                     seed: int = 0, quiet: bool = False) -> list[dict[str, Any]]:
    """Aggregates with bootstrap CIs over runs per core, shift, level and metric, probability of improvement and
    IQM differences, performance profiles, every run's scores; tables and plots (the ``compare`` command).

    ``runs``: run dirs or dirs holding run dirs (each evaluated before). Output dir default:
    ``DIR/compare`` for one DIR, else ``<common parent of the runs>/compare``. Writes compare.csv,
    compare.json, improvement.csv, scores.csv, compare.png and profiles.png; returns the compare.csv rows.
    Prints the table and, on stderr, a warning per budget mismatch or left-out setting; ``quiet`` leaves
    out only the lines naming the files written (callers that print their own).
    """
    if not 1 <= reps <= MAX_REPS:
        raise UserError(f"--reps must be from 1 to {MAX_REPS:,}, got {reps}")
    check_seed(seed)
    run_dirs = find_run_dirs(list(runs))
    out = Path(out) if out is not None else default_compare_out(runs, run_dirs)
    check_dir(out, "--out", COMPARE_FILES)
    comparison = compare.compare_runs(run_dirs, reps=reps, seed=seed)
    compare.print_warnings(comparison)
    csv_path, json_path, improvement_path, scores_path = write_compare(comparison, out, run_dirs)
    plot = plot_compare(comparison["summary"], out / "compare.png")
    profiles = plot_profiles(comparison["profiles"], out / "profiles.png") if any(
        comparison["profiles"].values()) else None
    print_compare_table(comparison)
    if not quiet:
        print(f"compared {len(run_dirs)} runs: {csv_path}, {json_path}, {improvement_path}, {scores_path}\n"
              f"plot: {plot}"
              + (f", {profiles}" if profiles else ""))
    return comparison["summary"]


def write_study_report(directory: str | os.PathLike, out: str | os.PathLike | None = None, reps: int = 2000,
                       seed: int = 0, study: str | os.PathLike | None = None,
                       reference: str | None = None) -> tuple[Path, Path, list[Path]]:
    """``report.html`` (self-contained) and ``report.md`` for the runs under ``directory``, in ``out``
    (default ``directory``), with ``runs.csv`` (the ``report`` command).

    An ``out`` elsewhere also gets compare's ``compare.csv``, ``improvement.csv`` and ``scores.csv``, so that
    it holds everything to publish. ``study``: a study (grid) file whose ``primary`` comparison the report
    shows first; ``reference``: the label the verdict measures the others against (default lstm). It
    reuses ``<directory>/compare/compare.json`` when that is of this rims-rl, bootstrapped with these ``reps``
    and ``seed``, newer than every run's results.json and covers exactly the runs under ``directory``, else
    compares first. Returns the HTML and Markdown paths and the copied tables.
    """
    if reps < 1:
        raise UserError(f"--reps must be >= 1, got {reps}")
    check_seed(seed)
    primary = read_primary(study) if study is not None else None
    directory = Path(directory)
    run_dirs = find_run_dirs([directory])
    missing = [r for r in run_dirs if not (r / EVAL_DIR / "results.json").is_file()]
    if missing:
        raise UserError(f"{missing[0]} has no {EVAL_DIR}/results.json; run `rims-rl evaluate --model {missing[0]}` "
                        f"first")
    out_dir = Path(out) if out is not None else directory
    check_dir(out_dir, "--out", (*REPORT_FILES, *COMPARE_TABLES))
    compare_json = default_compare_out([directory], run_dirs) / "compare.json"
    newest = max((r / EVAL_DIR / "results.json").stat().st_mtime for r in run_dirs)
    comparison = read_comparison(compare_json) if is_current_comparison(compare_json, reps, seed) else None
    if (comparison is None or compare_json.stat().st_mtime < newest
            or {Path(r["dir"]).resolve() for r in comparison["runs"]} != {r.resolve() for r in run_dirs}):
        write_comparison([directory], out=compare_json.parent, reps=reps, seed=seed, quiet=True)
        comparison = read_comparison(compare_json)
    verdict(comparison, reference)  # an unknown --reference is one line before anything is written
    page, md = write_report(comparison, run_dirs, out_dir, reps=min(reps, CURVE_REPS), primary=primary,
                            reference=reference)
    copied = [atomic_write_bytes(out_dir / name, (compare_json.parent / name).read_bytes())
              for name in COMPARE_TABLES if out is not None and out_dir.resolve() != compare_json.parent.resolve()]
    return page, md, copied


def is_current_comparison(path: Path, reps: int, seed: int) -> bool:
    """Whether ``path`` is a compare.json in this rims-rl's layout, bootstrapped with ``reps`` resamples from
    ``seed`` (another one is redone, not refused)."""
    try:
        data = json.loads(path.read_text())
        return data.get("format") == compare.COMPARE_FORMAT and data.get("bootstrap") == {"reps": reps, "seed": seed}
    except (OSError, ValueError, AttributeError):
        return path.is_file()  # a damaged file: read_comparison names what is wrong


def report_line(page: Path, md: Path, copied: Sequence[Path]) -> str:
    """The line naming what :func:`write_study_report` wrote."""
    return f"report: {page} (self-contained) and {md}" + (f"; with {', '.join(str(c) for c in copied)}" if copied
                                                           else "")
