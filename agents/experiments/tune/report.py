"""The tune report: for each env, the best values per label, how the score depends on each searched key
(a sensitivity plot per key) and how the best score grew with the trials, from ``trials.csv``.

It is written by ``rims-rl report DIR`` when DIR holds a tune (``<DIR>/<env>/trials.csv``), as one
self-contained HTML page and a Markdown twin, like the study report.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from agents.experiments.evaluation.tables import format_number
from agents.experiments.files import atomic_write_text
from agents.experiments.render import Block, render_html, render_markdown
from agents.experiments.tune.storage import TRIAL_COLUMNS, TRIALS_FILE
from rims_rl.errors import UserError

TUNE_REPORT_FILES = ("report.html", "report.md", "tune_sensitivity.png", "tune_progress.png")


def tune_trial_files(directory: str | os.PathLike) -> list[Path]:
    """The ``trials.csv`` of a tune under ``directory`` (itself an env dir, or a logdir holding env dirs)."""
    directory = Path(directory)
    own = directory / TRIALS_FILE
    return [own] if own.is_file() else sorted(directory.glob(f"*/{TRIALS_FILE}"))


def read_trials(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a ``trials.csv`` (scores as floats, None for a failed trial) and its searched keys."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    missing = [c for c in TRIAL_COLUMNS if c not in columns]
    if missing:
        raise UserError(f"{path} is not a trials.csv of rims-rl tune (no column {missing[0]})")
    for row in rows:
        try:
            row["score"] = float(row["score"]) if row["score"] not in ("", None) else None
            row["trial"] = int(row["trial"])
        except ValueError:
            raise UserError(f"{path}: trial {row.get('trial')!r} has a score or number that is not a number") from None
    return rows, [c for c in columns if c not in TRIAL_COLUMNS]


def _value(text: str) -> Any:
    """A trials.csv cell as a number where it is one (else the text; None when empty)."""
    if text in ("", None):
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _cell(text: str) -> str:
    """A searched value for a table: numbers to 3 significant digits, "-" where the label does not search it."""
    value = _value(text)
    if value is None:
        return "-"
    return format_number(value) if isinstance(value, float) else str(value)


def best_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per label, its finished trial with the highest score (lowest number on ties)."""
    out: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["trial"]):
        if row["score"] is not None and (row["label"] not in out or row["score"] > out[row["label"]]["score"]):
            out[row["label"]] = row
    return out


def plot_sensitivity(rows: list[dict[str, Any]], keys: list[str], path: Path, title: str) -> Path:
    """One panel per searched key: each finished trial's score against its value, a colour per label."""
    from agents.experiments.plots import SHARE_LIMITS, plt, save_figure

    ncols = min(3, max(1, len(keys)))
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    labels = sorted({r["label"] for r in rows})
    bounded = all(r["score"] is None or 0.0 <= r["score"] <= 1.0 for r in rows)
    for ax, key in zip(axes.flat, keys):
        values = [_value(r[key]) for r in rows]
        categorical = any(isinstance(v, str) for v in values if v is not None)
        ticks = sorted({str(v) for v in values if v is not None})
        for i, label in enumerate(labels):
            points = [(v, r["score"]) for v, r in zip(values, rows)
                      if r["label"] == label and v is not None and r["score"] is not None]
            if not points:
                continue
            xs = [ticks.index(str(v)) + 0.08 * (i - (len(labels) - 1) / 2) if categorical else v for v, _ in points]
            ax.scatter(xs, [s for _, s in points], label=label, s=18, alpha=0.8, color=f"C{i}")
        numeric = [v for v in values if isinstance(v, (int, float))]
        if categorical:
            ax.set_xticks(range(len(ticks)), ticks)
        elif numeric and min(numeric) > 0 and max(numeric) / min(numeric) > 20:
            ax.set_xscale("log")
        if bounded:
            ax.set_ylim(*SHARE_LIMITS)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel("trial score")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
        else:  # e.g. cores.rims.k before any rims trial has finished
            ax.text(0.5, 0.5, "no finished trial searched this key yet", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="0.4")
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_progress(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """The best score so far against the trial number, one line per label."""
    from agents.experiments.plots import SHARE_LIMITS, plt, save_figure

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for i, label in enumerate(sorted({r["label"] for r in rows})):
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["trial"])
        best, xs, ys = -math.inf, [], []
        for n, row in enumerate(mine, start=1):
            if row["score"] is not None:
                best = max(best, row["score"])
            if best > -math.inf:
                xs.append(n)
                ys.append(best)
        ax.step(xs, ys, where="post", label=label, color=f"C{i}")
    if all(r["score"] is None or 0.0 <= r["score"] <= 1.0 for r in rows):
        ax.set_ylim(*SHARE_LIMITS)
    ax.set_xlabel("finished trials")
    ax.set_ylabel("best score so far")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def tune_blocks(trial_files: list[Path], out: Path) -> list[Block]:
    """The report: per env, the best values, the budget each label got, the sensitivity and progress plots,
    and every trial (collapsed)."""
    blocks = [Block("heading", "rims-rl tune report", level=1),
              Block("text", "Every label was tuned with the same search space and the same number of trials; "
                            "a trial's score is the mean unshifted success rate (return where the env has none) "
                            "of its tuning seeds.")]
    for path in trial_files:
        rows, keys = read_trials(path)
        env = path.parent.name
        blocks.append(Block("heading", env))
        if not rows:
            blocks.append(Block("text", "No finished trial yet."))
            continue
        best = best_rows(rows)
        header = ["label", "core", "trials", "failed", "best score", "trial", *keys]
        table = []
        for label in sorted({r["label"] for r in rows}):
            mine = [r for r in rows if r["label"] == label]
            b = best.get(label)
            table.append([label, mine[0]["core"], str(len(mine)), str(sum(r["score"] is None for r in mine)),
                          format_number(b["score"]) if b else "-", str(b["trial"]) if b else "-",
                          *(_cell(b[k]) if b else "-" for k in keys)])
        blocks.append(Block("table", header=header, rows=table))
        counts = {len([r for r in rows if r["label"] == label]) for label in best}
        if len(counts) > 1:
            blocks.append(Block("text", "- The labels have different numbers of finished trials: the budget is not "
                                        "yet equal; run the same tune command again to finish it."))
        slug = "" if len(trial_files) == 1 else f"_{env}"
        sensitivity = plot_sensitivity(rows, keys, out / f"tune_sensitivity{slug}.png", f"{env}: score against "
                                       f"each searched value")
        progress = plot_progress(rows, out / f"tune_progress{slug}.png", f"{env}: best score against trials")
        blocks.append(Block("image", "Each trial's score against each searched value (a colour per label)",
                            path=sensitivity))
        blocks.append(Block("image", "The best score so far against the number of finished trials", path=progress))
        blocks.append(Block("details", "Every trial", children=[Block(
            "table", header=["label", "trial", "score", "seconds", *keys],
            rows=[[r["label"], str(r["trial"]), format_number(r["score"]), r["seconds"], *(_cell(r[k]) for k in keys)]
                  for r in sorted(rows, key=lambda r: (r["label"], r["trial"]))])]))
    return blocks


def write_tune_report(directory: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``report.html`` and ``report.md`` of the tune under ``directory`` (into ``out``, default ``directory``)."""
    files = tune_trial_files(directory)
    if not files:
        raise UserError(f"no {TRIALS_FILE} under {directory}: not a tune logdir")
    out_dir = Path(out) if out is not None else Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = tune_blocks(files, out_dir)
    md = atomic_write_text(out_dir / "report.md", render_markdown(blocks, out_dir))
    page = atomic_write_text(out_dir / "report.html", render_html(blocks, "rims-rl tune report"))
    return page, md
