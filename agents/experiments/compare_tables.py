"""The comparison as terminal tables (``rims-rl compare`` prints them) and the cell formats that the
report's tables share: ``IQM [95% CI]``, labels with their core."""
from __future__ import annotations

from typing import Any

from agents.experiments.compare import METRIC_LABELS, NO_CI
from agents.experiments.evaluation.tables import format_number, table_console


def cell(row: dict[str, Any] | None, agg: str = "iqm") -> str:
    """``value [low, high]``, or the value alone when there is no CI (one run); "" for no row."""
    if row is None or row.get(agg) is None:
        return ""
    return with_ci(row[agg], row.get(f"{agg}_ci95_low"), row.get(f"{agg}_ci95_high"))


def with_ci(value: float, low: float | None, high: float | None) -> str:
    """``value [low, high]``, or the value alone without a CI."""
    text = format_number(value)
    if low is not None:
        text += f" [{format_number(low)}, {format_number(high)}]"
    return text


def label_name(rows: list[dict[str, Any]], label: str) -> str:
    """``label`` with its core in brackets where they differ ("rims-k3 (rims)"), else the label alone."""
    core = next((r["core"] for r in rows if r["label"] == label), label)
    return label if core == label else f"{label} ({core})"


def headline_metric(rows: list[dict[str, Any]]) -> str:
    """The metric tables lead with: success rate if the env has it, else normalized score, else return."""
    metrics = {r["metric"] for r in rows}
    return next(m for m in ("success_rate", "normalized_score", "return") if m in metrics)


def print_compare_table(comparison: dict[str, Any]) -> None:
    """Per env: each metric pooled over shifts per level, each shift's ladder, and the probability
    of improvement. Cells are ``IQM [95% CI]``; with one run per label: "1 seed: no CI"."""
    from rich.table import Table

    console = table_console()
    summary = comparison["summary"]
    for env in sorted({s["env"] for s in summary}):
        rows = [s for s in summary if s["env"] == env]
        levels = sorted({s["level"] for s in rows})
        labels = sorted({s["label"] for s in rows})
        single = all(s["runs"] == 1 for s in rows)
        ci_note = NO_CI if single else "IQM [95% bootstrap CI over runs, drawn jointly across pooled settings]"
        for metric in ("success_rate", "normalized_score", "return"):
            pooled = [s for s in rows if s["shift"] == "all" and s["metric"] == metric]
            if not pooled:
                continue
            caption = f"{ci_note}; level L pools every shift at level L"
            if metric == "return":
                caption += "; scale-changing shifts (e.g. size) left out"
            table = Table(title=f"{env}: IQM {METRIC_LABELS[metric]} by shift level", caption=caption)
            table.add_column("label (core)")
            table.add_column("runs", justify="right")
            for level in levels:
                table.add_column("unshifted" if level == 0 else f"level {level}", justify="right")
            for label in labels:
                cells = {s["level"]: s for s in pooled if s["label"] == label}
                runs = next(iter(cells.values()))["runs"] if cells else 0
                table.add_row(label_name(rows, label), str(runs), *(cell(cells.get(level)) for level in levels))
            console.print(table)
        metric = headline_metric(rows)
        shifts = list(dict.fromkeys(s["shift"] for s in rows if s["shift"] != "all"))
        if shifts:
            table = Table(title=f"{env}: IQM {METRIC_LABELS[metric]} along each shift", caption=ci_note)
            table.add_column("shift")
            table.add_column("label (core)")
            for level in levels:
                table.add_column(f"level {level}", justify="right")
            for shift in shifts:
                for label in labels:
                    cells = {s["level"]: s for s in rows
                             if s["label"] == label and s["shift"] == shift and s["metric"] == metric}
                    table.add_row(shift, label_name(rows, label), *(cell(cells.get(level)) for level in levels))
            console.print(table)
        pooled_poi = [p for p in comparison["improvement"] if p["env"] == env and p["shift"] == "all"
                      and p["label_a"] < p["label_b"]]
        if pooled_poi:
            table = Table(title=f"{env}: probability of improvement (pooled shifts)",
                          caption=("P(a run of A beats a run of B) on " + METRIC_LABELS[pooled_poi[0]["metric"]]
                                   + ("; " + NO_CI if single else "; [95% CI]")))
            table.add_column("A vs B")
            for level in levels:
                table.add_column("unshifted" if level == 0 else f"level {level}", justify="right")
            for a, b in dict.fromkeys((p["label_a"], p["label_b"]) for p in pooled_poi):
                cells = {p["level"]: p for p in pooled_poi if (p["label_a"], p["label_b"]) == (a, b)}
                table.add_row(f"{a} vs {b}", *(_poi_cell(cells.get(level)) for level in levels))
            console.print(table)
    if all(s["runs"] == 1 for s in summary):
        console.print(f"{NO_CI}: train several seeds (e.g. --seed 0 1 2) for confidence intervals across seeds")


def _poi_cell(row: dict[str, Any] | None) -> str:
    return "" if row is None else with_ci(row["probability"], row["ci95_low"], row["ci95_high"])


def pair_text(p: dict[str, Any]) -> tuple[str, str]:
    """``P [CI]`` and ``difference [CI]`` of an improvement row."""
    difference = p.get("difference")
    diff = "" if difference is None else with_ci(difference, p.get("difference_ci95_low"),
                                                  p.get("difference_ci95_high"))
    return with_ci(p["probability"], p["ci95_low"], p["ci95_high"]), diff
