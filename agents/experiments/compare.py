"""Compare runs (labels x seeds): aggregates with bootstrap CIs over runs, probability of improvement,
IQM differences, performance profiles, and every run's scores.

Each run contributes, per setting of its ``eval/results.json``, three scores (metrics): ``return``
(mean return), ``success_rate`` (MiniGrid/BabyAI only) and ``normalized_score``. For one env, core,
group and metric the score matrix is ``[runs, tasks]``: a group is either every shift pooled at one
level (``shift == "all"``; the tasks are the settings at that level, level 0 = the unshifted setting)
or one shift's ladder at one level (one task; its level 0 is the unshifted setting).

**Normalized score.** ``(R - R_random) / (R_ref - R_random_unshifted)`` with ``R`` a run's mean return on a
setting, ``R_random`` the random policy's on the same setting and episodes, and one fixed reference per
env: ``R_ref`` is the mean unshifted return over all runs of the comparison on that env (every core and
seed). The reference does not depend on the run being scored, so a run below the random policy gets a
negative score and stays in every table; 1 = the comparison's average unshifted level, 0 = chance. It is
an affine map per setting, so it never changes which run beats which on a setting. Adding or removing
runs changes the scale. It is undefined (empty) for an env whose runs do not beat chance on average.

Scale-changing shifts (``ShiftInfo.changes_scale``, e.g. ``size``: the step budget grows) are
compared on success rate and normalized score only: they get no ``return`` rows and are left out
of the pooled ``return`` aggregates.

**Statistics** (``agents.experiments.bootstrap``): 95% percentile CIs from 2,000 bootstrap resamples
of the runs. Within a group the runs are drawn jointly: each resample draws run indices once and
uses them on every setting of the group, because every setting is scored by the same trained runs
(rliable's stratified bootstrap draws them per setting, which makes pooled CIs too narrow). Envs are
separate strata (never pooled). Single-setting groups give rliable's numbers exactly. With one run per
core there is no CI: the CI columns are empty.

``compare.csv`` columns: env, label, core, shift, level, metric, runs, tasks, then for each aggregate
``<agg>, <agg>_ci95_low, <agg>_ci95_high``:

- ``iqm``: rliable's interquartile mean of all run x setting scores of the group (25% trimmed mean);
- ``mean``: the mean of all scores;
- ``median``: the median over runs of each run's mean over the group's settings (for one setting, the
  median over seeds);
- ``optimality_gap``: rliable's mean shortfall below 1 (success rate and normalized score only).

Runs are grouped by their **label** (a named variant of a config: the core's name unless a run names a
variant, e.g. ``rims-k3`` or ``lstm-matched``); every table shows the core beside the label. Runs of one
env and label must differ only in the seed.

``improvement.csv`` columns: env, shift, level, metric, label_a, label_b, core_a, core_b, runs_a, runs_b,
probability (that a run of label_a beats a run of label_b, ties counting half, averaged over the group's
settings), ci95_low, ci95_high, difference (IQM of label_a minus IQM of label_b on the metric), difference_ci95_low,
difference_ci95_high (from the same resamples). Each ordered pair is listed (A vs B and B vs A), for every
pooled level and every shift level above 0 (the unshifted setting once, as pooled level 0). The
metric is the env's primary one: success rate where episodes succeed or fail, else the normalized score
for scale-changing shifts and the return otherwise.

``scores.csv``: one row per run and evaluated setting (:data:`SCORES_COLUMNS`), the numbers every
table is computed from.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rliable import metrics

from agents.experiments.bootstrap import aggregate_cis, improvement_cis, point_estimate, profile_cis
from agents.experiments.evaluation.ladder import UNSHIFTED, scale_changing
from agents.experiments.evaluation.results import read_results
from agents.experiments.runs import EVAL_DIR, config_differences, read_run_config
from rims_rl.errors import UserError

AGGREGATES = ("iqm", "mean", "median", "optimality_gap")
COMPARE_COLUMNS = ("env", "label", "core", "shift", "level", "metric", "runs", "tasks") + tuple(
    col for agg in AGGREGATES for col in (agg, f"{agg}_ci95_low", f"{agg}_ci95_high"))
IMPROVEMENT_COLUMNS = ("env", "shift", "level", "metric", "label_a", "label_b", "core_a", "core_b", "runs_a",
                       "runs_b", "probability",
                       "ci95_low", "ci95_high", "difference", "difference_ci95_low", "difference_ci95_high")
SCORES_COLUMNS = ("env", "label", "core", "seed", "shift", "level", "success_rate", "mean_return", "normalized_score",
                  "random_success_rate", "random_return", "episodes")
METRIC_FIELDS = {"return": "mean_return", "success_rate": "success_rate", "normalized_score": "normalized_score"}
BOUNDED = ("success_rate", "normalized_score")  # metrics whose target is 1 (optimality gap, profiles)
METRIC_LABELS = {"return": "return", "success_rate": "success rate", "normalized_score": "normalized score"}
PROFILE_TAUS = {"success_rate": np.linspace(0.0, 1.0, 21), "normalized_score": np.linspace(0.0, 1.2, 25)}
NO_CI = "1 seed: no CI"
COMPARE_FORMAT = 3  # compare.json's layout (3: labels, joint bootstrap, scores, the unshifted setting compared once)


def aggregate_functions(metric: str) -> dict[str, Callable[[np.ndarray], float]]:
    """The aggregate functions for ``metric``: rliable's IQM, mean and optimality gap (none for raw returns)
    and the median over runs (:func:`agents.experiments.bootstrap.median`)."""
    funcs = {"iqm": metrics.aggregate_iqm, "mean": metrics.aggregate_mean,
             "median": lambda s: point_estimate("median", s)}
    if metric in BOUNDED:
        funcs["optimality_gap"] = lambda s: metrics.aggregate_optimality_gap(s, 1.0)
    return funcs


def aggregate_scores(scores: np.ndarray, metric: str, reps: int, seed: int) -> dict[str, float | None]:
    """IQM, mean, median (and optimality gap for bounded metrics) of ``scores [runs, tasks]`` with
    95% bootstrap CIs (runs drawn jointly across the tasks: agents.experiments.bootstrap); CIs None
    with one run."""
    funcs = aggregate_functions(metric)
    row: dict[str, float | None] = {}
    cis = aggregate_cis(scores, list(funcs), reps, seed) if scores.shape[0] > 1 else {}
    for name in AGGREGATES:
        point = float(funcs[name](scores)) if name in funcs else None
        low, high = cis.get(name, (None, None))
        row.update({name: point, f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    return row


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int,
                               seed: int) -> tuple[float, float | None, float | None]:
    """rliable's probability that a run of X beats a run of Y (``[runs, tasks]`` each) and its 95% CI.

    The CI needs several runs of both; else it is None.
    """
    row = improvement(x, y, reps, seed)
    return row["probability"], row["ci95_low"], row["ci95_high"]


def improvement(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> dict[str, float | None]:
    """P(a run of X beats a run of Y) and the IQM difference X - Y, each with its 95% CI (None unless
    both have several runs), from one set of joint resamples."""
    row: dict[str, float | None] = {
        "probability": float(metrics.probability_of_improvement(x, y)), "ci95_low": None, "ci95_high": None,
        "difference": float(metrics.aggregate_iqm(x) - metrics.aggregate_iqm(y)),
        "difference_ci95_low": None, "difference_ci95_high": None}
    if min(x.shape[0], y.shape[0]) >= 2:
        (row["ci95_low"], row["ci95_high"]), (row["difference_ci95_low"], row["difference_ci95_high"]) = \
            improvement_cis(x, y, reps, seed)
    return row


def mirrored(row: dict[str, Any]) -> dict[str, Any]:
    """The improvement row of B over A from that of A over B."""
    def flip(value: float | None, minus: float) -> float | None:
        return None if value is None else minus - value

    return {**row, "label_a": row["label_b"], "label_b": row["label_a"], "core_a": row["core_b"],
            "core_b": row["core_a"], "runs_a": row["runs_b"],
            "runs_b": row["runs_a"], "probability": 1 - row["probability"],
            "ci95_low": flip(row["ci95_high"], 1), "ci95_high": flip(row["ci95_low"], 1),
            "difference": -row["difference"], "difference_ci95_low": flip(row["difference_ci95_high"], 0),
            "difference_ci95_high": flip(row["difference_ci95_low"], 0)}


def _load_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Per run: env, core, seed, config and {(shift, level): scores} (:data:`SCORES_COLUMNS`' fields)."""
    runs = []
    for run_dir in run_dirs:
        cfg = read_run_config(run_dir)
        data = read_results(Path(run_dir) / EVAL_DIR / "results.json")
        rows = {(r["shift"], int(r["level"])): r for r in data["results"]}
        if (UNSHIFTED, 0) not in rows:
            raise UserError(f"{run_dir}: results.json has no unshifted row (shift none, level 0)")
        runs.append({"dir": str(run_dir), "env": cfg["env"], "label": cfg["label"], "core": cfg["core"],
                     "seed": cfg["seed"],
                     "rows": rows, "config": cfg, "episodes": data.get("episodes"),
                     "num_timesteps": data.get("num_timesteps")})
    _check_same_experiment(runs)
    for env in {r["env"] for r in runs}:
        add_normalized_scores([r for r in runs if r["env"] == env])
    return runs


def normalization_reference(env_runs: list[dict[str, Any]]) -> tuple[float, float] | None:
    """``(R_ref, R_random_unshifted)`` of an env: the mean unshifted return over all its runs and the random
    policy's unshifted mean return (averaged over the runs' baselines); None if the runs do not beat chance
    on average or a baseline is missing."""
    unshifted = [r["rows"][(UNSHIFTED, 0)] for r in env_runs]
    if any(u.get("random_return") is None for u in unshifted):
        return None
    reference = float(np.mean([u["mean_return"] for u in unshifted]))
    random = float(np.mean([u["random_return"] for u in unshifted]))
    return (reference, random) if reference > random else None


def add_normalized_scores(env_runs: list[dict[str, Any]]) -> None:
    """Set every row's ``normalized_score`` of the runs of one env from the env's fixed reference (module doc)."""
    reference = normalization_reference(env_runs)
    for run in env_runs:
        run["rows"] = {key: {**row, "normalized_score": None if reference is None or row.get("random_return") is None
                             else (row["mean_return"] - row["random_return"]) / (reference[0] - reference[1])}
                       for key, row in run["rows"].items()}


def _check_same_experiment(runs: list[dict[str, Any]]) -> None:
    """Runs of one env and core must differ in the seed only (else they are not seeds of one condition); the
    runtime keys (``device``: where a run trained, not what it computed) may differ, as in ``runs.run_state``."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str, int], str] = {}
    for run in runs:
        key = (run["env"], run["label"], run["seed"])
        if key in seen:
            raise UserError(f"runs {seen[key]} and {run['dir']} have the same env, label and seed; "
                            f"compare the runs of one experiment at a time, or give the variants labels "
                            f"(--label)")
        seen[key] = run["dir"]
        ref = first.setdefault((run["env"], run["label"]), run)
        differ = config_differences(ref["config"], run["config"], ignore=("seed",))
        if differ:
            raise UserError(f"runs {ref['dir']} and {run['dir']} (label {run['label']}) differ in {'; '.join(differ)},"
                            f" not only in the seed; give each variant its own label (--label)")


def _groups(env: str, env_runs: list[dict[str, Any]]) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """(shift, level, tasks) groups: every shift pooled per level, then each shift's ladder."""
    common = set.intersection(*(set(r["rows"]) for r in env_runs))
    levels = sorted({level for _, level in common})
    shifts = list(dict.fromkeys(name for name, level in env_runs[0]["rows"]
                                if (name, level) in common and name != UNSHIFTED))
    groups = [("all", level, sorted(s for s in common if s[1] == level)) for level in levels]
    for name in shifts:
        groups.append((name, 0, [(UNSHIFTED, 0)]))
        groups += [(name, level, [(name, level)]) for level in levels if (name, level) in common]
    return groups


def uncommon_settings(env_runs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Settings that some runs of an env evaluated and others did not (left out of the comparison)."""
    every = set.union(*(set(r["rows"]) for r in env_runs))
    common = set.intersection(*(set(r["rows"]) for r in env_runs))
    return sorted(every - common)


def metric_tasks(env: str, shift: str, metric: str, tasks: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The tasks of a group that ``metric`` may use: no scale-changing setting for raw returns."""
    if metric != "return":
        return tasks
    if shift != "all" and scale_changing(env, shift):
        return []
    return [t for t in tasks if not scale_changing(env, t[0])]


def primary_metric(env: str, shift: str, with_success: bool) -> str:
    """The metric of the probability of improvement for a group."""
    if with_success:
        return "success_rate"
    return "normalized_score" if shift != "all" and scale_changing(env, shift) else "return"


def _scores(label_runs: list[dict[str, Any]], metric: str, tasks: list[tuple[str, int]]) -> np.ndarray | None:
    """``[runs, tasks]`` scores of ``metric``, or None if any is undefined (e.g. no success notion)."""
    field = METRIC_FIELDS[metric]
    values = [[r["rows"][t].get(field) for t in tasks] for r in label_runs]
    if not tasks or any(v is None for row in values for v in row):
        return None
    return np.array(values, dtype=np.float64)


def score_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """scores.csv: one row per run and evaluated setting, sorted by env, core, seed, then the run's order."""
    rows = []
    for run in sorted(runs, key=lambda r: (r["env"], r["label"], r["seed"])):
        for (shift, level), row in run["rows"].items():
            rows.append({"env": run["env"], "label": run["label"], "core": run["core"], "seed": run["seed"],
                         "shift": shift, "level": level,
                         **{k: row.get(k) for k in SCORES_COLUMNS[5:]}})
    return rows


def compare_runs(run_dirs: list[Path], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The comparison of ``run_dirs``: ``{"summary": [compare.csv rows], "improvement": [improvement.csv
    rows], "scores": [scores.csv rows], "profiles": {env: performance profiles}, "runs": [per-run info],
    "left_out": {env: settings some runs lack}, "bootstrap": {"reps", "seed"}}``.

    Only settings evaluated in every run of an env are compared, so all labels face the same tasks.
    """
    runs = _load_runs(run_dirs)
    summary: list[dict[str, Any]] = []
    improvements: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    left_out: dict[str, list[str]] = {}
    for env in sorted({r["env"] for r in runs}):
        env_runs = [r for r in runs if r["env"] == env]
        labels = sorted({r["label"] for r in env_runs})
        by_label = {label: [r for r in env_runs if r["label"] == label] for label in labels}
        core_of = {r["label"]: r["core"] for r in env_runs}
        with_success = all(r["rows"][(UNSHIFTED, 0)].get("success_rate") is not None for r in env_runs)
        missing = uncommon_settings(env_runs)
        if missing:
            left_out[env] = [f"{shift} level {level}" for shift, level in missing]
        groups = _groups(env, env_runs)
        for shift, level, tasks in groups:
            for metric in METRIC_FIELDS:
                use = metric_tasks(env, shift, metric, tasks)
                for label in labels:
                    scores = _scores(by_label[label], metric, use)
                    if scores is None:
                        continue
                    summary.append({"env": env, "label": label, "core": core_of[label], "shift": shift,
                                    "level": level, "metric": metric,
                                    "runs": scores.shape[0], "tasks": scores.shape[1],
                                    **aggregate_scores(scores, metric, reps, seed)})
            if shift != "all" and level == 0:
                continue  # a ladder's level 0 is the unshifted setting, compared once (shift "all", level 0)
            metric = primary_metric(env, shift, with_success)
            use = metric_tasks(env, shift, metric, tasks)
            for a, b in itertools.combinations(labels, 2):
                x, y = _scores(by_label[a], metric, use), _scores(by_label[b], metric, use)
                if x is None or y is None:
                    continue
                row = {"env": env, "shift": shift, "level": level, "metric": metric, "label_a": a, "label_b": b,
                       "core_a": core_of[a], "core_b": core_of[b],
                       "runs_a": len(x), "runs_b": len(y), **improvement(x, y, reps, seed)}
                improvements += [row, mirrored(row)]
        profiles[env] = _profiles(env, by_label, groups, with_success, reps, seed)
    run_info = [{"dir": r["dir"], "env": r["env"], "label": r["label"], "core": r["core"], "seed": r["seed"],
                 "timesteps": r["config"].get("timesteps"), "num_timesteps": r["num_timesteps"],
                 "episodes": r["episodes"]} for r in runs]
    return {"summary": summary, "improvement": improvements, "scores": score_rows(runs), "profiles": profiles,
            "runs": run_info, "left_out": left_out, "bootstrap": {"reps": reps, "seed": seed}}


def _profiles(env: str, by_label: dict[str, list[dict[str, Any]]], groups, with_success: bool,
              reps: int, seed: int) -> dict[str, Any] | None:
    """Performance profiles over every shifted setting (level > 0): the share of (run, setting)
    scores above each threshold tau, per core, with 95% CIs when there are several runs."""
    metric = "success_rate" if with_success else "normalized_score"
    tasks = sorted({t for shift, level, ts in groups if shift == "all" and level > 0 for t in ts})
    scores = {label: _scores(label_runs, metric, tasks) for label, label_runs in by_label.items()}
    scores = {label: s for label, s in scores.items() if s is not None}
    if not scores:
        return None
    taus = PROFILE_TAUS[metric]
    out: dict[str, Any] = {"metric": metric, "taus": [float(t) for t in taus], "labels": {}}
    for label, s in scores.items():
        profile = [float(np.mean(s > tau)) for tau in taus]
        entry: dict[str, Any] = {"runs": int(s.shape[0]), "profile": profile, "ci95_low": None, "ci95_high": None}
        if s.shape[0] > 1:
            low, high = profile_cis(s, taus, reps, seed)
            entry["ci95_low"], entry["ci95_high"] = [float(v) for v in low], [float(v) for v in high]
        out["labels"][label] = entry
    return out


def comparison_warnings(comparison: dict[str, Any]) -> list[str]:
    """One line per env whose compared labels differ in budget or evaluation episodes, or whose runs were
    not all evaluated on the same settings."""
    lines = []
    for env in sorted({r["env"] for r in comparison["runs"]}):
        runs = [r for r in comparison["runs"] if r["env"] == env]
        for key, what in (("timesteps", "training budgets (steps)"), ("episodes", "evaluation episodes per setting")):
            values = {label: sorted({str(r[key]) for r in runs if r["label"] == label})
                      for label in {r["label"] for r in runs}}
            if len({v for vs in values.values() for v in vs}) > 1:
                shown = ", ".join(f"{label} {'/'.join(v)}" for label, v in sorted(values.items()))
                lines.append(f"{env}: the compared labels differ in {what}: {shown}")
        if env in comparison.get("left_out", {}):
            lines.append(f"{env}: {', '.join(comparison['left_out'][env])} not evaluated in every run; left out of "
                         f"the comparison")
    return lines


def print_warnings(comparison: dict[str, Any]) -> None:
    """Each of :func:`comparison_warnings` as one line on stderr."""
    for line in comparison_warnings(comparison):
        print(f"warning: {line}", file=sys.stderr)
