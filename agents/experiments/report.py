"""The study report: one self-contained HTML page (images embedded as base64, opens offline) and a
Markdown twin with the PNGs beside it.

It holds what was run (envs, labels and their cores, seeds, budgets, commit), learning curves, each shift's ladder
with CIs, pooled aggregates, probability of improvement, performance profiles, the random-policy
baseline and plain-language caveats. The report is built as a list of blocks (heading, paragraph,
table, image) rendered twice, so both files hold the same numbers.
"""
from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agents.experiments.compare import AGGREGATES, METRIC_LABELS, NO_CI, comparison_warnings
from agents.experiments.compare_tables import cell, headline_metric, pair_text, with_ci
from agents.experiments.evaluation.ladder import UNSHIFTED, scale_changing
from agents.experiments.evaluation.results import read_results
from agents.experiments.evaluation.tables import format_number
from agents.experiments.files import atomic_write_text
from agents.experiments.findings import (Primary, clear_comparisons, primary_answer, primary_reading, primary_row,
                                         runs_below_random, setting_name, trimmed_failures, verdict)
from agents.experiments.render import Block, render_html, render_markdown
from agents.experiments.runs import EVAL_DIR

REPORT_FILES = ("report.html", "report.md", "runs.csv", "report_curves.png", "report_ladder.png",
                "report_profiles.png")
RUNS_COLUMNS = ("env", "label", "core", "core_parameters", "seed", "timesteps", "budget", "wall_seconds",
                "success_rate", "mean_return")
UNDERTRAINED_FRACTION = 0.8  # a label below this share of the best label's unshifted score is flagged
FEW_SEEDS = 10  # percentile bootstrap CIs under-cover below about 10 runs


def package_commit(repo: Path = Path(__file__).resolve().parents[2]) -> str:
    """The git commit of the rims-rl source in ``repo`` (short hash, "+dirty" if a tracked file is modified),
    or "unknown" outside a git checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "") if commit else "unknown"


def _unshifted_score(summary: list[dict[str, Any]], env: str, metric: str) -> dict[str, float]:
    return {s["label"]: s["iqm"] for s in summary
            if s["env"] == env and s["shift"] == "all" and s["level"] == 0 and s["metric"] == metric}


def caveats(comparison: dict[str, Any], baselines: dict[str, dict[tuple[str, int], dict[str, Any]]]) -> list[str]:
    """Plain-language warnings: few seeds, undertrained labels, labels no better than chance, scale shifts,
    budget mismatches."""
    notes = []
    summary = comparison["summary"]
    runs = comparison["runs"]
    for env in sorted({r["env"] for r in runs}):
        counts = {c: sum(1 for r in runs if r["env"] == env and r["label"] == c) for c in {r["label"] for r in runs}}
        counts = {c: n for c, n in counts.items() if n}
        fewest = min(counts.values())
        if fewest == 1:
            notes.append(f"{env}: one seed per label ({NO_CI}). A difference between labels may be seed noise; "
                         f"train several seeds (e.g. `rims-rl demo --seed 0 1 2 3 4`) before drawing conclusions.")
        elif fewest < FEW_SEEDS:
            notes.append(f"{env}: only {fewest} seeds for some label. Percentile bootstrap CIs under-cover with so "
                         f"few runs (simulated with 5 runs: a 95% CI of the IQM held the truth about 88% of the "
                         f"time, and P(improvement) excluded 0.5 with no true difference about 9% of the time; "
                         f"docs/benchmarks.md#bench_coverage): read the CIs as too narrow, and train at least "
                         f"{FEW_SEEDS} seeds for a claim.")
        rows = [s for s in summary if s["env"] == env]
        if not rows:
            continue
        metric = "success_rate" if any(s["metric"] == "success_rate" for s in rows) else "return"
        scores = _unshifted_score(summary, env, metric)
        base = baselines.get(env, {}).get((UNSHIFTED, 0))
        what = f"unshifted IQM {METRIC_LABELS[metric]}"
        if metric == "return" and base is not None and base["random_return"] is not None:
            # returns can be negative (Pong): compare how far each label is above the random policy
            scores = {label: value - base["random_return"] for label, value in scores.items()}
            what = "unshifted IQM return above the random policy's"
        if scores:
            best_label = max(scores, key=scores.get)
            best = scores[best_label]
            for label, score in sorted(scores.items()):
                if best > 0 and score < UNDERTRAINED_FRACTION * best:
                    notes.append(f"{env}: {label} looks undertrained: its {what} {format_number(score)} is below "
                                 f"{UNDERTRAINED_FRACTION:.0%} of the best label's ({best_label}: "
                                 f"{format_number(best)}). Its shifted scores measure how little it learned as "
                                 f"much as how it generalizes; train it longer before comparing.")
        if base is not None:
            returns = _unshifted_score(summary, env, "return")
            for label, value in sorted(returns.items()):
                if base["random_return"] is not None and value <= base["random_return"]:
                    notes.append(f"{env}: {label} does not beat the random policy unshifted (IQM return "
                                 f"{format_number(value)} vs random {format_number(base['random_return'])}); its "
                                 f"normalized scores are at or below 0.")
        scale = sorted({s["shift"] for s in rows if s["shift"] != "all" and scale_changing(env, s["shift"])})
        if scale:
            notes.append(f"{env}: {', '.join(scale)} changes the task's scale (e.g. the step budget), so raw "
                         f"returns across its levels are not comparable: it is compared on success rate and "
                         f"normalized score only and left out of pooled return aggregates.")
    return notes + comparison_warnings(comparison)


def _baselines(run_dirs: list[dict[str, Any]]) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    """Per env: the random-policy row per setting (from the first run of the env; all share the cache)."""
    out: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for run in run_dirs:
        if run["env"] in out:
            continue
        data = read_results(Path(run["dir"]) / EVAL_DIR / "results.json")
        out[run["env"]] = {(r["shift"], int(r["level"])): {
            "random_return": r.get("random_return"), "random_success_rate": r.get("random_success_rate"),
            "episodes": r["episodes"], "seed": data.get("seed")} for r in data["results"]}
    return out


def _image_or_text(image: Path | None, caption: str, missing: str) -> Block:
    """An image block with ``caption``, or a text block saying ``missing`` where no image was drawn."""
    return Block("image", caption, path=image) if image is not None else Block("text", missing)


def answer_blocks(comparison: dict[str, Any], primary: Primary | None, reference: str | None) -> list[Block]:
    """The answer first: the primary comparison, the verdict per env, every comparison whose CI excludes
    0.5, and the runs that failed."""
    blocks: list[Block] = []
    if primary is not None:
        a, b = primary.labels
        blocks.append(Block("heading", "Primary comparison"))
        blocks.append(Block("text", f"Planned before the runs: P(a run of {a} beats a run of {b}) on "
                                    f"{METRIC_LABELS[primary.metric]}, {setting_name(primary.shift, primary.level)}"
                                    f" of {primary.env}."))
        row = primary_row(comparison, primary)
        if row is None:
            blocks.append(Block("text", "- These runs do not hold this comparison (env, shift, level, labels or "
                                        "metric missing)."))
        else:
            prob, diff = pair_text(row)
            blocks.append(Block("table", header=["comparison", "runs", "P(A > B) [95% CI]",
                                                 "IQM difference A - B [95% CI]", "reading"],
                                rows=[[f"{a} vs {b}", f"{row['runs_a']} vs {row['runs_b']}", prob, diff,
                                       primary_reading(row, primary)]]))
            blocks.append(Block("text", primary_answer(comparison, primary)))

    blocks.append(Block("heading", "Verdict"))
    verdicts = verdict(comparison, reference)
    if not verdicts:
        blocks.append(Block("text", "One label only: nothing to compare."))
    for env, v in verdicts.items():
        ref = v["reference"]
        metric = next((p["metric"] for rows in v["rows"].values() for p in rows.values()), "success_rate")
        blocks.append(Block("text", f"{env}: each label against {ref}, every shift pooled at each level. Cells: "
                                    f"P(a run of the label beats a run of {ref}) [95% CI]; below it the IQM "
                                    f"difference of {METRIC_LABELS[metric]} [95% CI]."))
        header = ["label", *(setting_name("all", level) for level in v["levels"])]
        rows = []
        for label, by_level in v["rows"].items():
            texts = [pair_text(by_level[level]) if level in by_level else ("", "") for level in v["levels"]]
            rows.append([f"{label} vs {ref}", *(t[0] for t in texts)])
            rows.append(["difference", *(t[1] for t in texts)])
        blocks.append(Block("table", header=header, rows=rows))

    clear, made = clear_comparisons(comparison)
    blocks.append(Block("heading", "Comparisons whose 95% CI excludes 0.5"))
    blocks.append(Block("text", f"{made} comparisons were made (each pair of labels on every pooled level and every "
                                f"shift level of every env). The CIs are not adjusted for multiple comparisons: "
                                f"with no true difference anywhere, about 1 in 20 would still exclude 0.5 by "
                                f"chance, and more with few seeds (about 1 in 11 with 5 runs per label, in "
                                f"simulation), where percentile bootstrap CIs are too narrow. Read a single one "
                                f"as a lead, not a finding."))
    if clear:
        blocks.append(Block("table", header=["env", "setting", "metric", "result", "P(A > B) [95% CI]",
                                             "IQM difference A - B [95% CI]", "runs"],
                            rows=[[p["env"], setting_name(p["shift"], p["level"]), METRIC_LABELS[p["metric"]],
                                   f"{p['label_a']} beats {p['label_b']}", *pair_text(p),
                                   f"{p['runs_a']} vs {p['runs_b']}"] for p in clear]))
    else:
        blocks.append(Block("text", f"None of the {made} comparisons has a 95% CI that excludes 0.5."))

    blocks.append(Block("heading", "Runs below the random baseline"))
    below = runs_below_random(comparison)
    if below:
        blocks.append(Block("text", "Runs whose unshifted score is not above the random policy's on the same "
                                    "episodes: they failed to learn the task. They stay in every table."))
        blocks.append(Block("table", header=["env", "label", "seed", "metric", "unshifted", "random policy"],
                            rows=[[r["env"], r["label"], str(r["seed"]), METRIC_LABELS[r["metric"]],
                                   format_number(r["score"]), format_number(r["random"])] for r in below]))
    else:
        blocks.append(Block("text", "None: every run beats the random policy unshifted."))
    trimmed = trimmed_failures(comparison)
    if trimmed:
        blocks.append(Block("text", "Runs at 0 unshifted that the IQM trims away (it drops the lowest quarter of "
                                    "a label's runs), so the IQM alone does not show them:"))
        blocks.append(Block("table", header=["env", "label", "seed", "runs of the label", "trimmed by the IQM"],
                            rows=[[r["env"], r["label"], str(r["seed"]), str(r["runs"]), str(r["trimmed"])]
                                  for r in trimmed]))
    return blocks


def build_blocks(comparison: dict[str, Any], images: dict[str, Path | None], commit: str,
                 primary: Primary | None = None, reference: str | None = None) -> list[Block]:
    """The report as blocks, from compare.json's content and the written PNGs: the answer first, then
    caveats and what was run, then the details (collapsed in HTML)."""
    runs = comparison["runs"]
    baselines = _baselines(runs)
    blocks = [Block("heading", "rims-rl study report", level=1),
              Block("text", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from commit {commit}.")]
    blocks += answer_blocks(comparison, primary, reference)

    blocks.append(Block("heading", "Caveats"))
    notes = caveats(comparison, baselines)
    if notes:
        blocks.extend(Block("text", f"- {note}") for note in notes)
    else:
        blocks.append(Block("text", f"None found (at least {FEW_SEEDS} seeds, every label near the best unshifted, "
                                    f"equal budgets)."))

    blocks.append(Block("heading", "What was run"))
    table_rows = []
    for env in sorted({r["env"] for r in runs}):
        for label in sorted({r["label"] for r in runs if r["env"] == env}):
            mine = [r for r in runs if r["env"] == env and r["label"] == label]
            seeds = " ".join(str(r["seed"]) for r in sorted(mine, key=lambda r: r["seed"]))
            table_rows.append([env, label, mine[0]["core"], seeds,
                               " / ".join(sorted({str(r["timesteps"]) for r in mine})),
                               " / ".join(sorted({str(r["num_timesteps"]) for r in mine})),
                               " / ".join(sorted({str(r["episodes"]) for r in mine}))])
    blocks.append(Block("table", header=["env", "label", "core", "seeds", "budget (steps)", "trained steps",
                                         "episodes per setting"], rows=table_rows))
    blocks.append(Block("heading", "Details"))
    blocks += detail_blocks(comparison, images, baselines, reference)
    return blocks


def detail_blocks(comparison: dict[str, Any], images: dict[str, Path | None],
                  baselines: dict[str, dict[tuple[str, int], dict[str, Any]]], reference: str | None) -> list[Block]:
    """The detail sections, each a collapsible block: learning curves, ladders, pooled aggregates, every
    pair's probability of improvement, performance profiles, the random-policy baseline."""
    summary = comparison["summary"]
    details = [Block("details", "Learning curves", children=[_image_or_text(
        images.get("curves"), "IQM across seeds against environment steps (95% CI bands with several runs)",
        "No training logs with rollout/ep_rew_mean were found.")])]

    ladder: list[Block] = []
    if images.get("ladder") is not None:
        ladder.append(Block("image", "IQM per shift level (95% CI bands only for labels with several runs)",
                            path=images["ladder"]))
    for env in sorted({s["env"] for s in summary}):
        rows = [s for s in summary if s["env"] == env]
        levels = sorted({s["level"] for s in rows})
        metric = headline_metric(rows)
        ladder_rows = []
        for shift in dict.fromkeys(s["shift"] for s in rows if s["shift"] != "all"):
            for label in sorted({s["label"] for s in rows}):
                cells = {s["level"]: s for s in rows if s["shift"] == shift and s["label"] == label
                         and s["metric"] == metric}
                ladder_rows.append([shift, label, *(cell(cells.get(level)) for level in levels)])
        ladder.append(Block("text", f"{env}: IQM {METRIC_LABELS[metric]} per level, [95% CI] where there are "
                                    f"several runs."))
        ladder.append(Block("table", header=["shift", "label", *(f"level {lv}" for lv in levels)], rows=ladder_rows))
    details.append(Block("details", "Each shift's ladder", children=ladder))

    pooled_rows = [[s["env"], METRIC_LABELS[s["metric"]], s["label"], str(s["level"]), str(s["runs"]),
                    *(cell(s, agg) for agg in AGGREGATES)] for s in summary if s["shift"] == "all"]
    details.append(Block("details", "Pooled aggregates", children=[
        Block("text", "Every shift pooled at each level. IQM and mean over all run x setting scores; median: the "
                      "median over runs of each run's mean over the level's settings; optimality gap: mean "
                      "shortfall below 1. Runs are resampled jointly across the pooled settings. Raw returns leave "
                      "out scale-changing shifts."),
        Block("table", header=["env", "metric", "label", "level", "runs", "IQM", "mean", "median", "optimality gap"],
              rows=pooled_rows)]))

    verdicts = verdict(comparison, reference)
    pairs = [p for p in comparison["improvement"] if _shown_once(p, verdicts)]
    details.append(Block("details", "Probability of improvement", children=[
        Block("text", "P(a run of label A scores higher than a run of label B), ties half, averaged over the group's "
                      "settings, and the IQM difference A - B; [95% CI] with several runs of both. Each pair once "
                      "(B is the reference label where one is compared); P(B > A) = 1 - P(A > B)."),
        Block("table", header=["env", "shift", "level", "metric", "A", "B", "P(A > B) [95% CI]",
                               "IQM difference A - B [95% CI]"],
              rows=[[p["env"], p["shift"], str(p["level"]), METRIC_LABELS[p["metric"]], p["label_a"], p["label_b"],
                     *pair_text(p)] for p in pairs])]))

    details.append(Block("details", "Performance profiles", children=[_image_or_text(
        images.get("profiles"), "Share of (run, shifted setting) scores above each threshold",
        "No shifted settings were evaluated.")]))
    base_rows = [[env, shift, str(level), format_number(b["random_return"]), format_number(b["random_success_rate"]),
                  str(b["episodes"])] for env, rows in baselines.items() for (shift, level), b in rows.items()]
    details.append(Block("details", "Random-policy baseline", children=[
        Block("text", "A uniformly random policy on the same episode seeds. Normalized score = (R - R_random) / "
                      "(R_ref - R_random unshifted), R_ref the mean unshifted return of all compared runs of the env."),
        Block("table", header=["env", "shift", "level", "random return", "random success rate", "episodes"],
              rows=base_rows)]))
    return details


def _shown_once(p: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> bool:
    """Whether the detail table shows this orientation of a pair: B is the env's reference label, else A < B."""
    ref = verdicts.get(p["env"], {}).get("reference")
    if ref in (p["label_a"], p["label_b"]):
        return p["label_b"] == ref
    return p["label_a"] < p["label_b"]


def write_report(comparison: dict[str, Any], run_dirs: list[Path], out_dir: str | os.PathLike,
                 reps: int = 500, primary: Primary | None = None, reference: str | None = None) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and its PNGs (``report_*.png``) into ``out_dir``."""
    from agents.experiments.curves import learning_curves
    from agents.experiments.plots import plot_compare, plot_learning_curves, plot_profiles

    commit = package_commit()  # before anything is written: a report published inside the repo is not "dirty"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path | None] = {"curves": None, "ladder": None, "profiles": None}
    curves = learning_curves(run_dirs, reps=reps)
    if curves:
        images["curves"] = plot_learning_curves(curves, out / "report_curves.png")
    if comparison["summary"]:
        images["ladder"] = plot_compare(comparison["summary"], out / "report_ladder.png")
    if any(comparison["profiles"].values()):
        images["profiles"] = plot_profiles(comparison["profiles"], out / "report_profiles.png")
    write_runs_table(run_dirs, out / "runs.csv")
    blocks = build_blocks(comparison, images, commit, primary, reference)
    md = atomic_write_text(out / "report.md", render_markdown(blocks, out))
    page = atomic_write_text(out / "report.html", render_html(blocks, "rims-rl study report"))
    return page, md


def run_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run (:data:`RUNS_COLUMNS`): env, label, core, its trainable core parameters, seed, trained steps, budget, training wall
    seconds (from the TensorBoard events) and the final model's unshifted success rate and mean return
    (from ``eval/results.json``; success empty where the env has none)."""
    from agents.experiments.curves import training_wall_seconds
    from agents.experiments.runs import read_run_config

    rows = []
    for run in run_dirs:
        cfg = read_run_config(run)
        data = read_results(run / EVAL_DIR / "results.json")
        unshifted = next((r for r in data["results"] if r["shift"] == UNSHIFTED and r["level"] == 0), {})
        wall = training_wall_seconds(run, cfg["n_envs"] * cfg["ppo"]["n_steps"])
        rows.append({"env": cfg["env"], "label": cfg["label"], "core": cfg["core"],
                     "core_parameters": cfg.get("core_parameters"), "seed": cfg["seed"],
                     "timesteps": data.get("num_timesteps"), "budget": cfg["timesteps"],
                     "wall_seconds": None if wall is None else round(wall, 1),
                     "success_rate": unshifted.get("success_rate"), "mean_return": unshifted.get("mean_return")})
    return sorted(rows, key=lambda r: (r["env"], r["label"], r["seed"]))


def write_runs_table(run_dirs: list[Path], path: str | os.PathLike) -> Path:
    """``runs.csv``: :func:`run_rows` with the columns :data:`RUNS_COLUMNS`, written atomically."""
    import csv

    from agents.experiments.files import atomic_open

    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(RUNS_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(run_rows(run_dirs))
    return Path(path)
