"""Findings generated from a comparison: what a reader must see first, computed, never hand-written.

- the primary comparison a study declares (:class:`Primary`), shown first and separately;
- the verdict: each label against a reference label at each level, every shift pooled;
- every comparison whose 95% CI of P(improvement) excludes 0.5, in either direction;
- runs that did not beat the random policy, and failed runs (score 0) that the IQM trims away.

Each function takes compare.json's content (``compare.compare_runs``) and returns plain rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from agents.experiments.compare import METRIC_LABELS, metric_tasks
from agents.experiments.compare_tables import cell, pair_text
from agents.experiments.evaluation.ladder import UNSHIFTED
from agents.experiments.evaluation.tables import format_number
from agents.checks import grid_seeds
from rims_rl.errors import UserError

PRIMARY_KEYS = ("env", "shift", "level", "labels", "metric")
METRICS = ("success_rate", "return", "normalized_score")


@dataclass(frozen=True)
class Primary:
    """The one comparison a study is planned to answer: P(labels[0] beats labels[1]) on ``metric`` at
    ``shift`` (a shift name, or ``all`` for every shift pooled) and ``level`` of ``env``."""

    env: str
    shift: str
    level: int
    labels: tuple[str, str]
    metric: str = "success_rate"
    runs: int | None = None  # the planned runs (seeds) per label; fewer give no verdict


def parse_primary(data: Any, where: str) -> Primary:
    """A :class:`Primary` from a study file's ``primary`` mapping; UserError naming the bad field."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: primary must be a mapping with keys {', '.join(PRIMARY_KEYS)}")
    data = {("labels" if k == "cores" else k): v for k, v in data.items()}  # `cores` names labels too
    unknown = sorted(set(data) - set(PRIMARY_KEYS))
    if unknown:
        raise UserError(f"{where}: primary: unknown key {unknown[0]!r}; valid keys: {', '.join(PRIMARY_KEYS)}")
    missing = [k for k in PRIMARY_KEYS[:4] if k not in data]
    if missing:
        raise UserError(f"{where}: primary lacks {', '.join(missing)}")
    labels, level, metric = data["labels"], data["level"], data.get("metric", "success_rate")
    if not (isinstance(labels, list) and len(labels) == 2 and all(isinstance(c, str) for c in labels)):
        raise UserError(f"{where}: primary.labels must be a list of two labels (core names or variants), "
                        f"got {labels!r}")
    if not isinstance(level, int) or isinstance(level, bool) or level < 0:
        raise UserError(f"{where}: primary.level must be an integer >= 0, got {level!r}")
    if metric not in METRICS:
        raise UserError(f"{where}: primary.metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return Primary(str(data["env"]), str(data["shift"]), level, (labels[0], labels[1]), metric)


def read_primary(path: str | Path) -> Primary | None:
    """The ``primary`` comparison of a study (grid) file, None if it declares none; UserError if unreadable."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read study file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"study file {path} is not valid YAML: {str(e).strip().splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("primary") is None:
        return None
    primary = parse_primary(data["primary"], f"study file {path}")
    seeds = grid_seeds(data.get("seeds"), f"study file {path}")
    return replace(primary, runs=len(set(seeds))) if seeds else primary


def primary_row(comparison: dict[str, Any], primary: Primary) -> dict[str, Any] | None:
    """The improvement row of the primary comparison, None if the runs do not hold it."""
    a, b = primary.labels
    return next((p for p in comparison["improvement"] if p["env"] == primary.env and p["shift"] == primary.shift
                 and p["level"] == primary.level and p["label_a"] == a and p["label_b"] == b
                 and p["metric"] == primary.metric), None)


def ci_side(row: dict[str, Any]) -> str:
    """Where an improvement row's 95% CI of P(label_a beats label_b) lies against 0.5: ``"above"``,
    ``"below"``, ``"includes"``, or ``"none"`` when there is no CI (a label has one run)."""
    if row["ci95_low"] is None:
        return "none"
    if row["ci95_low"] > 0.5:
        return "above"
    if row["ci95_high"] < 0.5:
        return "below"
    return "includes"


def excludes_half(row: dict[str, Any]) -> bool:
    """True if the row's 95% CI of P(improvement) lies entirely above 0.5."""
    return ci_side(row) == "above"


def reading(p: dict[str, Any]) -> str:
    """What an improvement row's CI says, in words."""
    return {"none": "no CI (one run of a label): no verdict",
            "above": f"{p['label_a']} beats {p['label_b']} (95% CI above 0.5)",
            "below": f"{p['label_b']} beats {p['label_a']} (95% CI below 0.5)",
            "includes": "no clear difference (95% CI includes 0.5)"}[ci_side(p)]


def setting_name(shift: str, level: int) -> str:
    """A setting in words: ``unshifted``, ``all shifts, level 3`` or ``novel_distractors level 3``."""
    if level == 0:
        return "unshifted"
    return f"all shifts, level {level}" if shift == "all" else f"{shift} level {level}"


def hypothesis_verdict(p: dict[str, Any]) -> str:
    """A planned hypothesis "label_a beats label_b", judged by the 95% CI of P(improvement) of row ``p``."""
    return {"none": "no verdict: a label has one run, so there is no CI",
            "above": "supported: the 95% CI of P lies above 0.5",
            "below": f"refuted: the 95% CI of P lies below 0.5 ({p['label_b']} is ahead)",
            "includes": "inconclusive: the 95% CI of P includes 0.5"}[ci_side(p)]


def short_of_plan(row: dict[str, Any], primary: Primary) -> str | None:
    """``"4 vs 10 of the planned 10 runs per label"`` when either label of the primary row has fewer runs than
    the study planned, else None (enough runs, or no plan)."""
    if primary.runs is None or min(row["runs_a"], row["runs_b"]) >= primary.runs:
        return None
    return f"{row['runs_a']} vs {row['runs_b']} of the planned {primary.runs} runs per label"


def primary_reading(row: dict[str, Any], primary: Primary) -> str:
    """The primary table's reading: :func:`reading`, or no verdict with fewer runs than planned."""
    short = short_of_plan(row, primary)
    return f"no verdict ({short})" if short else reading(row)


def primary_answer(comparison: dict[str, Any], primary: Primary) -> str:
    """The primary comparison's answer in one paragraph of plain words, every number from ``comparison``:
    P(A beats B), the IQM difference and each label's IQM, each with its 95% CI, the verdict (none with fewer
    runs than the study planned) and the random policy's score on the same episodes."""
    a, b = primary.labels
    where = f"{setting_name(primary.shift, primary.level)} of {primary.env}"
    row = primary_row(comparison, primary)
    if row is None:
        return f"The runs do not hold the primary comparison ({a} vs {b}, {where}): no verdict."
    prob, diff = pair_text(row)
    iqm_rows = {label: next((s for s in comparison["summary"] if s["env"] == primary.env and s["label"] == label
                             and s["shift"] == primary.shift and s["level"] == primary.level
                             and s["metric"] == primary.metric), None) for label in (a, b)}
    iqm = {label: cell(row) for label, row in iqm_rows.items()}
    metric = METRIC_LABELS[primary.metric]
    short = short_of_plan(row, primary)
    judged = f"no verdict: {short}" if short else hypothesis_verdict(row)
    return (f"Primary hypothesis, {a} beats {b} on {metric} in {where}: {judged}. "
            f"Over {row['runs_a']} vs {row['runs_b']} runs, P({a} beats {b}) = {prob}; the IQM difference "
            f"{a} - {b} is {diff or 'not computed'}; IQM {metric}: {a} {iqm[a] or '-'}, {b} {iqm[b] or '-'} "
            f"(95% bootstrap CIs over runs).{_random_text(comparison, primary, iqm_rows)}")


def random_score(comparison: dict[str, Any], primary: Primary) -> float | None:
    """The uniformly random policy's score on the primary setting's episodes: over the settings the primary
    IQM pools (those every run of the env evaluated, less scale-changing ones for returns), the mean of each
    setting's score; None for a normalized score or when the runs do not record it."""
    field = {"success_rate": "random_success_rate", "return": "random_return"}.get(primary.metric)
    rows = [s for s in comparison.get("scores") or [] if s["env"] == primary.env]
    if field is None or not rows:
        return None
    evaluated: dict[tuple[str, int], set[tuple[str, int]]] = {}
    for s in rows:
        evaluated.setdefault((s["label"], s["seed"]), set()).add((s["shift"], s["level"]))
    common = set.intersection(*evaluated.values())
    if primary.level == 0:
        settings = [(UNSHIFTED, 0)]
    elif primary.shift == "all":
        settings = sorted(t for t in common if t[1] == primary.level)
    else:
        settings = [(primary.shift, primary.level)]
    settings = metric_tasks(primary.env, primary.shift, primary.metric, [t for t in settings if t in common])
    means = []
    for setting in settings:
        values = [s[field] for s in rows if (s["shift"], s["level"]) == setting and s[field] is not None]
        if not values:
            return None
        means.append(sum(values) / len(values))
    return sum(means) / len(means) if means else None


def _random_text(comparison: dict[str, Any], primary: Primary, iqm_rows: dict[str, dict[str, Any] | None]) -> str:
    """The sentence placing both labels against the random policy on the primary setting ("" without it)."""
    random = random_score(comparison, primary)
    if random is None:
        return ""
    below = [label for label in primary.labels if (iqm_rows[label] or {}).get("iqm_ci95_high") is not None
             and iqm_rows[label]["iqm_ci95_high"] < random]
    where = ("" if not below else f"; {below[0]}'s IQM CI lies below it" if len(below) == 1
             else "; both labels' IQM CIs lie below it")
    return f" A uniformly random policy scores {format_number(random)} on the same episodes{where}."


def clear_comparisons(comparison: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every improvement row whose 95% CI lies entirely on one side of 0.5, each pair once (oriented so that
    label_a is the better one), and the number of comparisons made (unordered pairs x groups)."""
    rows = [p for p in comparison["improvement"] if excludes_half(p)]
    made = len({(p["env"], p["shift"], p["level"], p["metric"], *sorted((p["label_a"], p["label_b"])))
                for p in comparison["improvement"]})
    return sorted(rows, key=lambda p: (p["env"], p["shift"] != "all", p["shift"], p["level"], p["label_a"])), made


def reference_label(labels: list[str], wanted: str | None) -> str | None:
    """The label others are measured against: ``wanted`` if present, else lstm, else None (one label)."""
    if len(labels) < 2:
        return None
    if wanted is not None:
        if wanted not in labels:
            raise UserError(f"--reference {wanted!r} is not a compared label; valid: {', '.join(labels)}")
        return wanted
    return "lstm" if "lstm" in labels else sorted(labels)[0]


def verdict(comparison: dict[str, Any], reference: str | None = None) -> dict[str, dict[str, Any]]:
    """Per env: ``{"reference", "levels", "rows": {label: {level: improvement row}}}``, each label against the
    reference label with every shift pooled at each level (the group's primary metric)."""
    out: dict[str, dict[str, Any]] = {}
    for env in sorted({p["env"] for p in comparison["improvement"]}):
        pooled = [p for p in comparison["improvement"] if p["env"] == env and p["shift"] == "all"]
        labels = sorted({p["label_a"] for p in pooled} | {p["label_b"] for p in pooled})
        ref = reference_label(labels, reference)
        if ref is None:
            continue
        rows = {label: {p["level"]: p for p in pooled if p["label_a"] == label and p["label_b"] == ref}
                for label in labels if label != ref}
        out[env] = {"reference": ref, "levels": sorted({p["level"] for p in pooled}), "rows": rows}
    return out


def runs_below_random(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs whose unshifted success rate (return where the env has none) is not above the random policy's."""
    out = []
    for s in comparison.get("scores") or []:
        if (s["shift"], s["level"]) != (UNSHIFTED, 0):
            continue
        with_success = s["success_rate"] is not None and s["random_success_rate"] is not None
        score, random = ((s["success_rate"], s["random_success_rate"]) if with_success
                         else (s["mean_return"], s["random_return"]))
        if random is not None and score <= random:
            out.append({"env": s["env"], "label": s["label"], "core": s["core"], "seed": s["seed"],
                        "metric": "success_rate" if with_success else "return", "score": score, "random": random})
    return out


def trimmed_failures(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs scoring exactly 0 unshifted (success rate, else return) that the IQM of their label trims away
    (it drops the lowest ``floor(runs / 4)`` scores), so the IQM alone hides them."""
    out = []
    unshifted = [s for s in comparison.get("scores") or [] if (s["shift"], s["level"]) == (UNSHIFTED, 0)]
    for env, label in sorted({(s["env"], s["label"]) for s in unshifted}):
        mine = sorted((s for s in unshifted if (s["env"], s["label"]) == (env, label)),
                      key=lambda s: (_primary_score(s), s["seed"]))
        trimmed = math.floor(0.25 * len(mine))
        out += [{"env": env, "label": label, "seed": s["seed"], "runs": len(mine), "trimmed": trimmed}
                for s in mine[:trimmed] if _primary_score(s) == 0]
    return out


def _primary_score(row: dict[str, Any]) -> float:
    return row["success_rate"] if row["success_rate"] is not None else row["mean_return"]

