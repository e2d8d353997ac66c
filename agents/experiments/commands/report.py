"""``rims-rl report``: the study report (HTML + Markdown) of evaluated runs."""
from __future__ import annotations

import argparse
from typing import Any

from agents.experiments.commands.options import add_bootstrap, add_subcommand

NAME = "report"


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "write the study report (HTML + Markdown) of evaluated runs",
                       "Write report.html (self-contained, images embedded) and report.md (PNGs beside it), the "
                       "answer first: the study's primary comparison, each core against a reference core, every "
                       "comparison whose 95% CI excludes 0.5, runs below the random baseline; then caveats, what "
                       "was run, learning curves, each shift's ladder, pooled aggregates, probability of "
                       "improvement, performance profiles, the random baseline. See docs/statistics.md.")
    p.add_argument("dir", metavar="DIR", help="a dir holding evaluated run dirs (e.g. runs/demo), or a tune's logdir "
                                              "(its best values, sensitivity and progress per label)")
    p.add_argument("--out", help="output dir (default: DIR)")
    p.add_argument("--study", metavar="STUDY.yaml",
                   help="a study (grid) file: its primary comparison (key primary) is shown first")
    p.add_argument("--reference", metavar="CORE", help="the core the verdict measures every other core against "
                                                      "(default: lstm where compared)")
    add_bootstrap(p, "bootstrap resamples (if compare must run first)")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl report`` with the parsed ``args`` and print where the report is: the tune report when DIR
    holds a tune (``<DIR>/<env>/trials.csv``), else the study report of its evaluated runs."""
    from agents.experiments.study import report_line, write_study_report
    from agents.experiments.tune.report import tune_trial_files, write_tune_report

    if tune_trial_files(args.dir):
        print(report_line(*write_tune_report(args.dir, out=args.out), []))
        return
    print(report_line(*write_study_report(args.dir, out=args.out, reps=args.reps, seed=args.seed, study=args.study,
                                          reference=args.reference)))
