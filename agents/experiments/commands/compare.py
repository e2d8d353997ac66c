"""``rims-rl compare``: evaluated runs compared with rliable aggregates and bootstrap CIs."""
from __future__ import annotations

import argparse
from typing import Any

from agents.experiments.commands.options import add_bootstrap, add_subcommand

NAME = "compare"


def register(subparsers: Any) -> None:
    """Add the ``compare`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "compare evaluated runs: rliable aggregates with bootstrap CIs",
                       "Aggregate evaluated runs per env and core: IQM, mean, median (over runs) and optimality gap "
                       "of success rate, normalized score and return per shift level with 95% bootstrap CIs over "
                       "runs, drawn jointly across pooled settings (none with 1 seed); probability of improvement "
                       "and IQM difference of each core over each other; performance profiles; writes "
                       "compare.csv/json, improvement.csv, scores.csv (every run and setting), compare.png and "
                       "profiles.png. See docs/statistics.md.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run dirs, or dirs searched for run dirs")
    p.add_argument("--out", help="output dir (default: DIR/compare for one DIR holding runs, else <common parent of "
                                 "the runs>/compare)")
    add_bootstrap(p, "bootstrap resamples")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl compare`` with the parsed ``args`` (it prints the table and the files written)."""
    from agents.experiments.study import write_comparison

    write_comparison(args.runs, out=args.out, reps=args.reps, seed=args.seed)
