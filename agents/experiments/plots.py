"""PNG plots of evaluation sweeps and comparisons (matplotlib, Agg backend, no display needed)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents.experiments.files import atomic_open  # noqa: E402


def _shift_curves(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """Group single-shift results by shift name, each curve starting at the unshifted row (level 0)."""
    base = next(r for r in rows if r.shift == "none")
    curves: dict[str, list[Any]] = {}
    for r in rows:
        if r.shift != "none":
            curves.setdefault(r.shift, [base]).append(r)
    return {name: sorted(pts, key=lambda r: r.level) for name, pts in curves.items()}


def plot_returns_vs_level(rows: Sequence[Any], path: str | os.PathLike, title: str) -> Path:
    """Mean return (with its 95% CI as error bars) against shift level, one line per shift.

    ``rows``: objects with ``shift, level, mean_return, ci95_low, ci95_high`` (evaluation.Result).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    curves = _shift_curves(rows)
    if not curves:  # only the unshifted setting was evaluated
        curves = {"none": [next(r for r in rows if r.shift == "none")]}
    for name, pts in curves.items():
        x = [p.level for p in pts]
        y = [p.mean_return for p in pts]
        err = [[p.mean_return - p.ci95_low for p in pts], [p.ci95_high - p.mean_return for p in pts]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel("shift level (0 = training conditions)")
    ax.set_ylabel("mean return (95% CI)")
    ax.set_xticks(sorted({r.level for r in rows}))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_compare(summary: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """IQM return with its 95% bootstrap CI band against shift level, one line per core.

    One panel per env and shift: first every shift pooled ("all"), then each shift's own ladder.
    ``summary``: rows with ``env, core, shift, runs, level, iqm_return, ci95_low, ci95_high`` (compare.py).
    """
    panels = list(dict.fromkeys((s["env"], s["shift"]) for s in
                                sorted(summary, key=lambda s: (s["env"], s["shift"] != "all"))))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (env, shift) in zip(axes.flat, panels):
        rows = [s for s in summary if s["env"] == env and s["shift"] == shift]
        for core in sorted({s["core"] for s in rows}):
            pts = sorted((s for s in rows if s["core"] == core), key=lambda s: s["level"])
            x = [p["level"] for p in pts]
            line, = ax.plot(x, [p["iqm_return"] for p in pts], marker="o", label=f"{core} ({pts[0]['runs']} runs)")
            ax.fill_between(x, [p["ci95_low"] for p in pts], [p["ci95_high"] for p in pts],
                            color=line.get_color(), alpha=0.2)
        ax.set_title(f"{env}: {'all shifts pooled' if shift == 'all' else shift}", fontsize=9)
        ax.set_xlabel("shift level (0 = training conditions)")
        ax.set_ylabel("IQM return (95% CI)")
        ax.set_xticks(sorted({s["level"] for s in rows}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path
