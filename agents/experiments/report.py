"""The study report: one self-contained HTML page (images embedded as base64, opens offline) and a
Markdown twin with the PNGs beside it.

It holds what was run (envs, cores, seeds, budgets, commit), learning curves, each shift's ladder
with CIs, pooled aggregates, probability of improvement, performance profiles, the random-policy
baseline and plain-language caveats. The report is built as a list of blocks (heading, paragraph,
table, image) rendered twice, so both files hold the same numbers.
"""
from __future__ import annotations

import base64
import html
import json
import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agents.experiments.compare import AGGREGATES, METRIC_LABELS, NO_CI, cell, headline_metric
from agents.experiments.evaluation.ladder import UNSHIFTED, scale_changing
from agents.experiments.evaluation.results import read_results
from agents.experiments.evaluation.tables import format_number
from agents.experiments.files import atomic_write_text
from agents.experiments.runs import EVAL_DIR
from rims_rl.errors import UserError

REPORT_FILES = ("report.html", "report.md", "runs.csv", "report_curves.png", "report_ladder.png",
                "report_profiles.png")
RUNS_COLUMNS = ("env", "core", "seed", "timesteps", "budget", "wall_seconds", "success_rate", "mean_return")
UNDERTRAINED_FRACTION = 0.8  # a core below this share of the best core's unshifted score is flagged
FEW_SEEDS = 5


@dataclass
class Block:
    """One piece of the report: ``kind`` is heading (text, level), text, table (header, rows) or image (path, text)."""

    kind: str
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: Path | None = None


def package_commit() -> str:
    """The git commit of the rims-rl source that runs (short hash, "+dirty" if modified), or "unknown"."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "") if commit else "unknown"


def _unshifted_score(summary: list[dict[str, Any]], env: str, metric: str) -> dict[str, float]:
    return {s["core"]: s["iqm"] for s in summary
            if s["env"] == env and s["shift"] == "all" and s["level"] == 0 and s["metric"] == metric}


def caveats(comparison: dict[str, Any], baselines: dict[str, dict[tuple[str, int], dict[str, Any]]]) -> list[str]:
    """Plain-language warnings: few seeds, undertrained cores, cores no better than chance, scale shifts."""
    notes = []
    summary = comparison["summary"]
    runs = comparison["runs"]
    for env in sorted({r["env"] for r in runs}):
        counts = {c: sum(1 for r in runs if r["env"] == env and r["core"] == c) for c in {r["core"] for r in runs}}
        counts = {c: n for c, n in counts.items() if n}
        fewest = min(counts.values())
        if fewest == 1:
            notes.append(f"{env}: one seed per core ({NO_CI}). A difference between cores may be seed noise; "
                         f"train several seeds (e.g. `rims-rl demo --seeds 0 1 2 3 4`) before drawing conclusions.")
        elif fewest < FEW_SEEDS:
            notes.append(f"{env}: only {fewest} seeds for some core: the bootstrap CIs across seeds are rough "
                         f"(they under-cover with fewer than about {FEW_SEEDS} runs).")
        rows = [s for s in summary if s["env"] == env]
        if not rows:
            continue
        metric = "success_rate" if any(s["metric"] == "success_rate" for s in rows) else "return"
        scores = _unshifted_score(summary, env, metric)
        base = baselines.get(env, {}).get((UNSHIFTED, 0))
        what = f"unshifted IQM {METRIC_LABELS[metric]}"
        if metric == "return" and base is not None and base["random_return"] is not None:
            # returns can be negative (Pong): compare how far each core is above the random policy
            scores = {core: value - base["random_return"] for core, value in scores.items()}
            what = "unshifted IQM return above the random policy's"
        if scores:
            best_core = max(scores, key=scores.get)
            best = scores[best_core]
            for core, score in sorted(scores.items()):
                if best > 0 and score < UNDERTRAINED_FRACTION * best:
                    notes.append(f"{env}: {core} looks undertrained: its {what} {format_number(score)} is below "
                                 f"{UNDERTRAINED_FRACTION:.0%} of the best core's ({best_core}: "
                                 f"{format_number(best)}). Its shifted scores measure how little it learned as "
                                 f"much as how it generalizes; train it longer before comparing.")
        if base is not None:
            returns = _unshifted_score(summary, env, "return")
            for core, value in sorted(returns.items()):
                if base["random_return"] is not None and value <= base["random_return"]:
                    notes.append(f"{env}: {core} does not beat the random policy unshifted (IQM return "
                                 f"{format_number(value)} vs random {format_number(base['random_return'])}); its "
                                 f"normalized scores are undefined.")
        scale = sorted({s["shift"] for s in rows if s["shift"] != "all" and scale_changing(env, s["shift"])})
        if scale:
            notes.append(f"{env}: {', '.join(scale)} changes the task's scale (e.g. the step budget), so raw "
                         f"returns across its levels are not comparable: it is compared on success rate and "
                         f"normalized score only and left out of pooled return aggregates.")
    return notes


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


def build_blocks(comparison: dict[str, Any], images: dict[str, Path | None], commit: str) -> list[Block]:
    """The report as blocks, from compare.json's content and the written PNGs."""
    summary, runs = comparison["summary"], comparison["runs"]
    baselines = _baselines(runs)
    blocks = [Block("heading", "rims-rl study report", level=1),
              Block("text", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from commit {commit}.")]

    blocks.append(Block("heading", "What was run"))
    table_rows = []
    for env in sorted({r["env"] for r in runs}):
        for core in sorted({r["core"] for r in runs if r["env"] == env}):
            mine = [r for r in runs if r["env"] == env and r["core"] == core]
            table_rows.append([env, core, " ".join(str(r["seed"]) for r in sorted(mine, key=lambda r: r["seed"])),
                               " / ".join(sorted({str(r["timesteps"]) for r in mine})),
                               " / ".join(sorted({str(r["num_timesteps"]) for r in mine})),
                               " / ".join(sorted({str(r["episodes"]) for r in mine}))])
    blocks.append(Block("table", header=["env", "core", "seeds", "budget (steps)", "trained steps",
                                         "episodes per setting"], rows=table_rows))

    blocks.append(Block("heading", "Caveats"))
    notes = caveats(comparison, baselines)
    if notes:
        blocks.extend(Block("text", f"- {note}") for note in notes)
    else:
        blocks.append(Block("text", "None found (several seeds, every core near the best unshifted)."))

    blocks.append(Block("heading", "Learning curves"))
    blocks.append(_image_or_text(images.get("curves"), "IQM across seeds against environment steps (95% CI bands "
                                 "with several runs)", "No training logs with rollout/ep_rew_mean were found."))

    blocks.append(Block("heading", "Each shift's ladder"))
    if images.get("ladder") is not None:
        blocks.append(Block("image", "IQM per shift level (95% CI bands only for cores with several runs)",
                            path=images["ladder"]))
    for env in sorted({s["env"] for s in summary}):
        rows = [s for s in summary if s["env"] == env]
        levels = sorted({s["level"] for s in rows})
        metric = headline_metric(rows)
        ladder_rows = []
        for shift in dict.fromkeys(s["shift"] for s in rows if s["shift"] != "all"):
            for core in sorted({s["core"] for s in rows}):
                cells = {s["level"]: s for s in rows if s["shift"] == shift and s["core"] == core
                         and s["metric"] == metric}
                ladder_rows.append([shift, core, *(cell(cells.get(level)) for level in levels)])
        blocks.append(Block("text", f"{env}: IQM {METRIC_LABELS[metric]} per level, [95% CI] where there are "
                                    f"several runs."))
        blocks.append(Block("table", header=["shift", "core", *(f"level {lv}" for lv in levels)], rows=ladder_rows))

    blocks.append(Block("heading", "Pooled aggregates"))
    blocks.append(Block("text", "Every shift pooled at each level (rliable, stratified bootstrap). Raw returns "
                                "leave out scale-changing shifts. Optimality gap: mean shortfall below 1."))
    pooled_rows = []
    for s in summary:
        if s["shift"] == "all":
            pooled_rows.append([s["env"], METRIC_LABELS[s["metric"]], s["core"], str(s["level"]), str(s["runs"]),
                                *(cell(s, agg) for agg in AGGREGATES)])
    blocks.append(Block("table", header=["env", "metric", "core", "level", "runs", "IQM", "mean", "median",
                                         "optimality gap"], rows=pooled_rows))

    blocks.append(Block("heading", "Probability of improvement"))
    blocks.append(Block("text", "P(a run of core A scores higher than a run of core B), ties half, averaged over "
                                "the group's settings; [95% CI] with several runs of both."))
    poi_rows = [[p["env"], p["shift"], str(p["level"]), METRIC_LABELS[p["metric"]], p["core_a"], p["core_b"],
                 format_number(p["probability"]),
                 "" if p["ci95_low"] is None else f"[{format_number(p['ci95_low'])}, {format_number(p['ci95_high'])}]"]
                for p in comparison["improvement"]]
    blocks.append(Block("table", header=["env", "shift", "level", "metric", "A", "B", "P(A > B)", "95% CI"],
                        rows=poi_rows))

    blocks.append(Block("heading", "Performance profiles"))
    blocks.append(_image_or_text(images.get("profiles"), "Share of (run, shifted setting) scores above each "
                                 "threshold", "No shifted settings were evaluated."))

    blocks.append(Block("heading", "Random-policy baseline"))
    blocks.append(Block("text", "A uniformly random policy on the same episode seeds; normalized score = "
                                "(R - R_random) / (R_unshifted - R_random unshifted)."))
    base_rows = [[env, shift, str(level), format_number(b["random_return"]), format_number(b["random_success_rate"]),
                  str(b["episodes"])]
                 for env, rows in baselines.items() for (shift, level), b in rows.items()]
    blocks.append(Block("table", header=["env", "shift", "level", "random return", "random success rate",
                                         "episodes"], rows=base_rows))
    return blocks


def render_markdown(blocks: list[Block], image_dir: Path) -> str:
    """Markdown with images referenced by their path relative to ``image_dir``."""
    lines = []
    for b in blocks:
        if b.kind == "heading":
            lines += ["#" * b.level + " " + b.text, ""]
        elif b.kind == "text":
            lines += [b.text, ""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(b.header) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b.rows]
            lines.append("")
        elif b.kind == "image" and b.path is not None:
            lines += [f"![{b.text}]({os.path.relpath(b.path, image_dir)})", "", f"*{b.text}*", ""]
    return "\n".join(lines)


def render_html(blocks: list[Block]) -> str:
    """One self-contained HTML page: PNGs embedded as base64 data URIs, inline CSS, no external links."""
    body = []
    for b in blocks:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif b.kind == "text":
            text = html.escape(b.text[2:] if b.text.startswith("- ") else b.text)
            body.append(f"<p class='note'>{text}</p>" if b.text.startswith("- ") else f"<p>{text}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "image" and b.path is not None:
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f"<figure><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             "p.note{background:#fff6e0;border-left:4px solid #e0a000;padding:6px 10px}"
             "figcaption{font-size:90%;color:#555}")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>rims-rl study report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(comparison: dict[str, Any], run_dirs: list[Path], out_dir: str | os.PathLike,
                 reps: int = 500) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and its PNGs (``report_*.png``) into ``out_dir``."""
    from agents.experiments.curves import learning_curves
    from agents.experiments.plots import plot_compare, plot_learning_curves, plot_profiles

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
    blocks = build_blocks(comparison, images, package_commit())
    md = atomic_write_text(out / "report.md", render_markdown(blocks, out))
    page = atomic_write_text(out / "report.html", render_html(blocks))
    return page, md


def run_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run (:data:`RUNS_COLUMNS`): env, core, seed, trained steps, budget, training wall
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
        rows.append({"env": cfg["env"], "core": cfg["core"], "seed": cfg["seed"],
                     "timesteps": data.get("num_timesteps"), "budget": cfg["timesteps"],
                     "wall_seconds": None if wall is None else round(wall, 1),
                     "success_rate": unshifted.get("success_rate"), "mean_return": unshifted.get("mean_return")})
    return sorted(rows, key=lambda r: (r["env"], r["core"], r["seed"]))


def write_runs_table(run_dirs: list[Path], path: str | os.PathLike) -> Path:
    """``runs.csv``: :func:`run_rows` with the columns :data:`RUNS_COLUMNS`, written atomically."""
    import csv

    from agents.experiments.files import atomic_open

    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(RUNS_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(run_rows(run_dirs))
    return Path(path)


def read_comparison(path: str | os.PathLike) -> dict[str, Any]:
    """compare.json's content (summary, improvement, profiles, runs); UserError if unreadable or of an older rims-rl."""
    try:
        data = json.loads(Path(path).read_text())
        return {k: data[k] for k in ("summary", "improvement", "profiles", "runs")}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a compare.json of this rims-rl ({type(e).__name__}: {str(e)[:80]}); "
                        f"remove it, or run `rims-rl compare` again") from None
