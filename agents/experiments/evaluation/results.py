"""The result of one setting (a row of ``results.csv``) and the results files.

``results.csv`` columns (one row per setting):

- ``env, shift, level``: the setting; ``episodes``: how many episodes it ran;
- ``mean_return, std_return``: mean and sample std of the episode returns;
  ``ci95_low, ci95_high``: Student-t 95% CI of the mean return;
- ``success_rate``: share of successful episodes (empty where the env has no success notion);
  ``success_ci95_low, success_ci95_high``: its 95% Wilson interval;
- ``mean_length``: mean episode length in agent steps;
- ``random_return, random_success_rate``: the random-policy baseline of the same setting on the
  same episode seeds (see ``agents.experiments.baseline``; empty without a baseline);
- ``normalized_score``: ``(R - R_random) / (R_unshifted - R_random_unshifted)`` with ``R`` the
  setting's mean return: 1 = as far above chance as in training conditions, 0 = chance level.
  Empty when the model does not beat the random policy unshifted (the ratio would be meaningless).
  Retention is this normalized score (or the success rate), never a ratio of raw returns.

``results.json`` holds the same rows, each with its per-episode records (``index``, ``seed``,
``return``, ``success``, ``length``), plus the model file, its step count, the seed and
``deterministic``.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from agents.experiments.fields import check_record, check_records
from agents.experiments.files import atomic_open
from rims_rl.errors import UserError

RESULT_COLUMNS = (
    "env", "shift", "level", "episodes", "mean_return", "std_return", "ci95_low", "ci95_high",
    "success_rate", "success_ci95_low", "success_ci95_high", "mean_length", "random_return",
    "random_success_rate", "normalized_score",
)
RESULTS_FILE = "results.json"


@dataclass
class Result:
    """Statistics of the episodes of one setting (a row of results.csv)."""

    env: str
    shift: str
    level: int
    episodes: int
    mean_return: float
    std_return: float
    ci95_low: float
    ci95_high: float
    success_rate: float | None = None
    success_ci95_low: float | None = None
    success_ci95_high: float | None = None
    mean_length: float = 0.0
    random_return: float | None = None
    random_success_rate: float | None = None
    normalized_score: float | None = None
    episode_records: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The results.csv row (no per-episode records)."""
        return {k: v for k, v in asdict(self).items() if k in RESULT_COLUMNS}


def write_csv_json(out_dir: str | os.PathLike, stem: str, columns: Sequence[str], rows: list[dict[str, Any]],
                   document: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (``rows`` restricted to ``columns``; None as an empty cell) and
    ``<stem>.json`` (``document`` plus the column list) into ``out_dir`` atomically; return their paths."""
    out = Path(out_dir)
    return write_csv(out / f"{stem}.csv", columns, rows), write_json(out / f"{stem}.json", columns, document)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` restricted to ``columns`` (None as an empty cell) to the CSV file ``path`` atomically."""
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_json(path: Path, columns: Sequence[str], document: dict[str, Any]) -> Path:
    """Write ``document`` plus the column list to the JSON file ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump({**document, "columns": list(columns)}, f, indent=1)
    return path


def write_results(results: list[Result], out_dir: str | os.PathLike, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` into ``out_dir``; return their paths."""
    return write_results_csv(results, out_dir), write_results_json(results, out_dir, meta)


def write_results_csv(results: list[Result], out_dir: str | os.PathLike) -> Path:
    """Write ``results.csv`` into ``out_dir``; return its path."""
    return write_csv(Path(out_dir) / "results.csv", RESULT_COLUMNS, [r.row() for r in results])


def write_results_json(results: list[Result], out_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``results.json`` (``meta`` and every row with its episodes) into ``out_dir``; return its path.

    An evaluation writes it last: its presence marks a finished evaluation (``sweep.grid.is_evaluated``)."""
    return write_json(Path(out_dir) / RESULTS_FILE, RESULT_COLUMNS, {**meta, "results": [asdict(r) for r in results]})


RESULTS_ADVICE = "run `rims-rl evaluate` on that run again"
# The fields of results.json that compare, report and the sweep read: required, or checked where present
# (files of earlier versions lack some of them).
RESULTS_FIELDS = {"results": "list"}
RESULTS_OPTIONAL = {"env": "text", "model": "text", "num_timesteps": "int", "seed": "int", "episodes": "int",
                    "deterministic": "bool"}
ROW_FIELDS = {"shift": "text", "level": "int", "episodes": "int", "mean_return": "number", "success_rate": "number?"}
ROW_OPTIONAL = {"env": "text", "std_return": "number", "ci95_low": "number", "ci95_high": "number",
                "success_ci95_low": "number?", "success_ci95_high": "number?", "mean_length": "number",
                "random_return": "number?", "random_success_rate": "number?", "normalized_score": "number?",
                "episode_records": "list"}


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Load a ``results.json``, checked field by field; UserError naming the file (and the field) if it is
    missing, unreadable, damaged or written by an older version."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `rims-rl evaluate` on that run first") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a results file ({type(e).__name__}); {RESULTS_ADVICE}") from None
    check_record(data, "", path, RESULTS_ADVICE, RESULTS_FIELDS, RESULTS_OPTIONAL)
    rows = data["results"]
    if not rows:
        raise UserError(f"{path}: results is an empty list; {RESULTS_ADVICE}")
    if isinstance(rows[0], dict) and "success_rate" not in rows[0]:
        raise UserError(f"{path} was written by an older rims-rl (no success_rate); {RESULTS_ADVICE}")
    check_records(rows, "results", path, RESULTS_ADVICE, ROW_FIELDS, ROW_OPTIONAL)
    seen: dict[tuple[str, int], int] = {}
    for i, row in enumerate(rows):
        key = (row["shift"], row["level"])
        if key in seen:
            raise UserError(f"{path}: results[{i}] repeats the setting of results[{seen[key]}] ({key[0]} level "
                            f"{key[1]}); {RESULTS_ADVICE}")
        seen[key] = i
    return data
