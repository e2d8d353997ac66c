"""compare's files: written by :func:`write_compare` (compare.csv, compare.json, improvement.csv, scores.csv)
and read back, field by field, by :func:`read_comparison` (the report reuses a fresh compare.json)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agents.experiments.compare import (AGGREGATES, COMPARE_COLUMNS, COMPARE_FORMAT, IMPROVEMENT_COLUMNS,
                                        METRIC_LABELS, SCORES_COLUMNS)
from agents.experiments.evaluation.results import write_csv_json
from agents.experiments.fields import check_kind, check_record, check_records
from rims_rl.errors import UserError


def write_compare(comparison: dict[str, Any], out_dir: str | os.PathLike,
                  run_dirs: list[Path]) -> tuple[Path, Path, Path, Path]:
    """Write ``compare.csv``, ``compare.json`` (everything), ``improvement.csv`` and ``scores.csv`` into ``out_dir``."""
    csv_path, json_path = write_csv_json(out_dir, "compare", COMPARE_COLUMNS, comparison["summary"],
                                         {"format": COMPARE_FORMAT, "run_dirs": [str(r) for r in run_dirs], **comparison,
                                          "improvement_columns": list(IMPROVEMENT_COLUMNS),
                                          "scores_columns": list(SCORES_COLUMNS)})
    improvement_path, _ = write_csv_json(out_dir, "improvement", IMPROVEMENT_COLUMNS, comparison["improvement"],
                                         {"improvement": comparison["improvement"]})
    scores_path, _ = write_csv_json(out_dir, "scores", SCORES_COLUMNS, comparison["scores"],
                                    {"scores": comparison["scores"]})
    return csv_path, json_path, improvement_path, scores_path



COMPARE_ADVICE = "remove it, or run `rims-rl compare` again"
# The fields of compare.json that the report reads (agents.experiments.fields kinds).
_METRICS = tuple(METRIC_LABELS)
_CIS = {f"{agg}{suffix}": "number?" for agg in AGGREGATES for suffix in ("", "_ci95_low", "_ci95_high")}
SUMMARY_FIELDS = {"env": "text", "label": "text", "core": "text", "shift": "text", "level": "int", "metric": _METRICS, "runs": "int",
                  "tasks": "int", "iqm": "number"}
IMPROVEMENT_FIELDS = {"env": "text", "shift": "text", "level": "int", "metric": _METRICS, "label_a": "text",
                      "label_b": "text", "core_a": "text", "core_b": "text", "runs_a": "int", "runs_b": "int", "probability": "number",
                      "ci95_low": "number?", "ci95_high": "number?"}
IMPROVEMENT_OPTIONAL = {"difference": "number?", "difference_ci95_low": "number?", "difference_ci95_high": "number?"}
RUN_FIELDS = {"dir": "text", "env": "text", "label": "text", "core": "text", "seed": "int"}
RUN_OPTIONAL = {"timesteps": "int?", "num_timesteps": "int?", "episodes": "int?"}
SCORE_FIELDS = {"env": "text", "label": "text", "core": "text", "seed": "int", "shift": "text", "level": "int",
                "success_rate": "number?", "mean_return": "number?", "random_success_rate": "number?",
                "random_return": "number?"}
SCORE_OPTIONAL = {"normalized_score": "number?", "episodes": "int?"}
PROFILE_FIELDS = {"metric": _METRICS, "taus": "numbers", "labels": "mapping"}
PROFILE_LABEL_FIELDS = {"runs": "int", "profile": "numbers", "ci95_low": "numbers?", "ci95_high": "numbers?"}


def read_comparison(path: str | os.PathLike) -> dict[str, Any]:
    """compare.json's content (summary, improvement, profiles, runs, scores, left_out), checked field by
    field; UserError naming the file (and the field) if it is unreadable, damaged or of an older rims-rl."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a compare.json of this rims-rl ({type(e).__name__}: {str(e)[:80]}); "
                        f"{COMPARE_ADVICE}") from None
    check_record(data, "", path, COMPARE_ADVICE, {"summary": "list", "improvement": "list", "profiles": "mapping",
                                                   "runs": "list"}, {"scores": "list?", "left_out": "mapping"})
    check_records(data["summary"], "summary", path, COMPARE_ADVICE, SUMMARY_FIELDS, _CIS)
    check_records(data["improvement"], "improvement", path, COMPARE_ADVICE, IMPROVEMENT_FIELDS,
                  IMPROVEMENT_OPTIONAL)
    check_records(data["runs"], "runs", path, COMPARE_ADVICE, RUN_FIELDS, RUN_OPTIONAL)
    if data.get("scores") is not None:
        check_records(data["scores"], "scores", path, COMPARE_ADVICE, SCORE_FIELDS, SCORE_OPTIONAL)
    for env, profile in data["profiles"].items():
        if profile is None:
            continue
        where = f"profiles.{env}"
        check_record(profile, where, path, COMPARE_ADVICE, PROFILE_FIELDS)
        for label, entry in profile["labels"].items():
            check_record(entry, f"{where}.labels.{label}", path, COMPARE_ADVICE, PROFILE_LABEL_FIELDS)
            for name in ("profile", "ci95_low", "ci95_high"):
                if entry[name] is not None and len(entry[name]) != len(profile["taus"]):
                    raise UserError(f"{path}: {where}.labels.{label}.{name} has {len(entry[name])} values for "
                                    f"{len(profile['taus'])} taus; {COMPARE_ADVICE}")
    for env, settings in data.get("left_out", {}).items():
        check_kind(settings, "texts", f"left_out.{env}", path, COMPARE_ADVICE)
    comparison = {k: data[k] for k in ("summary", "improvement", "profiles", "runs")}
    return {**comparison, "scores": data.get("scores"), "left_out": data.get("left_out", {})}
