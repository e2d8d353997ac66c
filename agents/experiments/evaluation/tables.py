"""Numbers and tables for the terminal (an evaluation's results; compare and report format with them too)."""
from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from agents.experiments.evaluation.results import Result


def format_number(x: float | None) -> str:
    """A compact number for tables ("-" for None/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        x = 0.0  # -0.0 (a difference of equal scores, negated) prints as 0
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table_console() -> Console:
    """A rich Console for tables: the terminal's width, or 120 columns when output is piped.

    Markup and emoji codes are off: titles and cells hold user text (env ids, shift names, labels, paths),
    which must print as written (``x[/bad]`` would raise, ``[bold]`` would vanish).
    """
    console = Console(markup=False, emoji=False)
    return console if console.is_terminal else Console(width=120, markup=False, emoji=False)


def print_results_table(results: list[Result], title: str) -> None:
    """Print the results as a rich table (success and normalized score only where defined)."""
    table = Table(title=title, caption="norm. score = (R - R_random) / (R_unshifted - R_random unshifted); "
                                       "success CI: 95% Wilson")
    for col in ("shift", "level", "episodes", "mean return", "95% CI", "success", "success 95% CI",
                "random return", "norm. score"):
        table.add_column(col, justify="left" if col == "shift" else "right")
    for r in results:
        success_ci = ("-" if r.success_rate is None
                      else f"[{format_number(r.success_ci95_low)}, {format_number(r.success_ci95_high)}]")
        table.add_row(
            r.shift, str(r.level), str(r.episodes), format_number(r.mean_return),
            f"[{format_number(r.ci95_low)}, {format_number(r.ci95_high)}]", format_number(r.success_rate),
            success_ci, format_number(r.random_return), format_number(r.normalized_score),
        )
    table_console().print(table)
