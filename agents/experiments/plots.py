"""PNG plots of evaluations, comparisons and learning curves (matplotlib, Agg backend, no display).

A plot draws a CI band or error bar only where one exists: per-episode CIs for one run's ladder,
across-run CIs only where a core has several runs (with one run the legend says "no CI").
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents.experiments.compare import METRIC_LABELS  # noqa: E402
from agents.experiments.files import atomic_open  # noqa: E402


SHARE_LIMITS = (-0.02, 1.02)  # success rates and shares span 0-1 on every plot, so small gaps look small


def runs_label(label: str, runs: int) -> str:
    """Legend text: "rims (1 run, no CI)", "lstm (3 runs)"."""
    return f"{label} (1 run, no CI)" if runs == 1 else f"{label} ({runs} runs)"


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _shift_curves(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """Group single-shift results by shift name, each curve starting at the unshifted row (level 0)."""
    base = next(r for r in rows if r.shift == "none")
    curves: dict[str, list[Any]] = {}
    for r in rows:
        if r.shift != "none":
            curves.setdefault(r.shift, [base]).append(r)
    return {name: sorted(pts, key=lambda r: r.level) for name, pts in curves.items()}


def plot_returns_vs_level(rows: Sequence[Any], path: str | os.PathLike, title: str) -> Path:
    """One run's ladder: success rate (if any) and mean return against shift level, one line per
    shift, with per-episode 95% CIs as error bars; the random policy dashed.

    ``rows``: evaluation.Result objects.
    """
    curves = _shift_curves(rows) or {"none": [next(r for r in rows if r.shift == "none")]}
    with_success = rows[0].success_rate is not None
    panels = [("success_rate", "success rate (95% Wilson CI)")] if with_success else []
    panels.append(("mean_return", "mean return (95% CI)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.0), squeeze=False)
    for ax, (field, label) in zip(axes.flat, panels):
        low, high = ("success_ci95_low", "success_ci95_high") if field == "success_rate" else ("ci95_low", "ci95_high")
        for name, pts in curves.items():
            x = [p.level for p in pts]
            y = [getattr(p, field) for p in pts]
            err = [[v - getattr(p, low) for p, v in zip(pts, y)], [getattr(p, high) - v for p, v in zip(pts, y)]]
            line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
            random = [p.random_success_rate if field == "success_rate" else p.random_return for p in pts]
            if all(v is not None for v in random):
                ax.plot(x, random, ls="--", lw=1, color=line[0].get_color(), alpha=0.6)
        ax.set_xlabel("shift level (0 = training conditions)")
        ax.set_ylabel(label)
        if field == "success_rate":
            ax.set_ylim(*SHARE_LIMITS)
        ax.set_xticks(sorted({r.level for r in rows}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: random policy", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_compare(summary: Sequence[dict[str, Any]], path: str | os.PathLike, metric: str | None = None) -> Path:
    """IQM of ``metric`` against shift level, one line per label, a 95% CI band only for labels with
    several runs. One panel per env and shift: every shift pooled ("all") first, then each ladder.

    ``metric``: one of compare's metrics (default: success rate where present, else normalized score,
    else return). ``summary``: compare.csv rows.
    """
    if metric is None:
        present = {s["metric"] for s in summary}
        metric = next(m for m in ("success_rate", "normalized_score", "return") if m in present)
    rows_m = [s for s in summary if s["metric"] == metric]
    panels = list(dict.fromkeys((s["env"], s["shift"]) for s in
                                sorted(rows_m, key=lambda s: (s["env"], s["shift"] != "all"))))
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (env, shift) in zip(axes.flat, panels):
        rows = [s for s in rows_m if s["env"] == env and s["shift"] == shift]
        for label in sorted({s["label"] for s in rows}):
            pts = sorted((s for s in rows if s["label"] == label), key=lambda s: s["level"])
            x = [p["level"] for p in pts]
            runs = pts[0]["runs"]
            line, = ax.plot(x, [p["iqm"] for p in pts], marker="o", label=runs_label(label, runs))
            if runs > 1 and all(p["iqm_ci95_low"] is not None for p in pts):
                ax.fill_between(x, [p["iqm_ci95_low"] for p in pts], [p["iqm_ci95_high"] for p in pts],
                                color=line.get_color(), alpha=0.2)
        ax.set_title(f"{env}: {'all shifts pooled' if shift == 'all' else shift}", fontsize=9)
        ax.set_xlabel("shift level (0 = training conditions)")
        ci = any(s["runs"] > 1 for s in rows)
        ax.set_ylabel(f"IQM {METRIC_LABELS[metric]}" + (" (95% CI)" if ci else ""))
        if metric == "success_rate":
            ax.set_ylim(*SHARE_LIMITS)
        ax.set_xticks(sorted({s["level"] for s in rows}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _finish_panels(fig, axes, len(panels), path)


def plot_profiles(profiles: dict[str, Any], path: str | os.PathLike) -> Path:
    """Performance profiles (rliable): share of (run, shifted setting) scores above tau, per label,
    one panel per env; CI bands only for labels with several runs."""
    envs = [env for env, p in profiles.items() if p]
    fig, axes = plt.subplots(1, max(1, len(envs)), figsize=(5.2 * max(1, len(envs)), 3.8), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        p = profiles[env]
        for label, entry in sorted(p["labels"].items()):
            line, = ax.plot(p["taus"], entry["profile"], label=runs_label(label, entry["runs"]))
            if entry["ci95_low"] is not None:
                ax.fill_between(p["taus"], entry["ci95_low"], entry["ci95_high"], color=line.get_color(), alpha=0.2)
        ax.set_title(f"{env}: every shifted setting", fontsize=9)
        ax.set_xlabel(f"{METRIC_LABELS[p['metric']]} threshold tau")
        ax.set_ylabel("fraction of runs x settings with score > tau")
        ax.set_ylim(*SHARE_LIMITS)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_learning_curves(curves: dict[str, Any], path: str | os.PathLike) -> Path:
    """IQM across seeds against env steps, one panel per env and signal, one line per core; CI
    bands only where a core has several runs. ``curves``: :func:`agents.experiments.curves.learning_curves`."""
    panels = [(env, tag) for env, by_tag in curves.items() for tag in by_tag]
    ncols = min(2, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (env, tag) in zip(axes.flat, panels):
        for core, c in sorted(curves[env][tag].items()):
            line, = ax.plot(c["steps"], c["iqm"], label=runs_label(core, c["runs"]))
            if c["ci95_low"] is not None:
                ax.fill_between(c["steps"], c["ci95_low"], c["ci95_high"], color=line.get_color(), alpha=0.2)
        ax.set_title(f"{env}: {tag}", fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("IQM across seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _finish_panels(fig, axes, len(panels), path)


def _finish_panels(fig: Any, axes: Any, used: int, path: str | os.PathLike) -> Path:
    """Hide the grid's unused axes (after the first ``used``), lay out and save ``fig`` to ``path``."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)
