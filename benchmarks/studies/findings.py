"""Print the study's findings as Markdown tables, from a comparison written by ``rims-rl compare``.

    python benchmarks/studies/findings.py runs/study/compare/compare.json [--label rims]
    python benchmarks/studies/findings.py docs/results/distractors         # a published folder's CSVs
    python benchmarks/studies/findings.py docs/results/fair --study benchmarks/studies/fair.yaml

Per env (task): each label's IQM success rate (else normalized score) unshifted, with every shift
pooled at each level, and each shift at its strongest level, with 95% bootstrap CIs over runs;
then the probability that a run of ``--label`` beats a run of each other label, unshifted and with
every shift pooled at the strongest level; with ``--study``, the study's primary comparison first; last, a tally of the comparisons involving ``--label`` whose 95% CI
excludes 0.5 (the report's generated section, counted per env and other label, in both directions).
Only formats numbers that compare computed.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.experiments.compare import COMPARE_COLUMNS, IMPROVEMENT_COLUMNS, METRIC_LABELS, SCORES_COLUMNS  # noqa: E402
from agents.experiments.compare_tables import cell, headline_metric, pair_text  # noqa: E402
from agents.experiments.evaluation.tables import format_number  # noqa: E402
from agents.experiments.comparison_files import read_comparison  # noqa: E402
from agents.experiments.findings import (Primary, clear_comparisons, primary_answer, primary_row,  # noqa: E402
                                         primary_reading, read_primary)
from rims_rl.errors import UserError  # noqa: E402

TEXT_COLUMNS = {"env", "label", "core", "shift", "metric", "label_a", "label_b", "core_a", "core_b"}


def _row(summary: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    return next((s for s in summary if all(s[k] == v for k, v in keys.items())), None)


def findings(comparison: dict[str, Any], label: str = "rims") -> str:
    """The Markdown text: one section per env of ``comparison`` (compare.json's content)."""
    summary, improvement = comparison["summary"], comparison["improvement"]
    out: list[str] = []
    for env in sorted({s["env"] for s in summary}):
        rows = [s for s in summary if s["env"] == env]
        metric = headline_metric(rows)
        labels = sorted({s["label"] for s in rows})
        levels = sorted({s["level"] for s in rows if s["shift"] == "all"})
        top = levels[-1]
        shifts = list(dict.fromkeys(s["shift"] for s in rows if s["shift"] != "all" and s["level"] == top))
        runs = {c: max(s["runs"] for s in rows if s["label"] == c) for c in labels}
        out.append(f"#### {env}: IQM {METRIC_LABELS[metric]} [95% CI]\n")
        header = ["label", "runs", "unshifted", *(f"all shifts, level {lv}" for lv in levels if lv > 0),
                  *(f"{sh} {top}" for sh in shifts)]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for c in labels:
            cells = [cell(_row(rows, label=c, shift="all", level=lv, metric=metric)) for lv in levels]
            cells += [cell(_row(rows, label=c, shift=sh, level=top, metric=metric)) for sh in shifts]
            out.append("| " + " | ".join([c, str(runs[c]), *cells]) + " |")
        mine = [p for p in improvement if p["env"] == env and p["label_a"] == label and p["metric"] == metric
                and p["shift"] == "all" and p["level"] in (0, top)]
        if mine:
            out.append(f"\nP({label} beats the other label) on {METRIC_LABELS[metric]} [95% CI]:\n")
            out.append(f"| other label | unshifted | all shifts, level {top} |")
            out.append("|---|---|---|")
            for other in sorted({p["label_b"] for p in mine}):
                texts = []
                for level in (0, top):
                    p = next((p for p in mine if p["label_b"] == other and p["level"] == level), None)
                    texts.append("" if p is None else format_number(p["probability"]) + (
                        "" if p["ci95_low"] is None else
                        f" [{format_number(p['ci95_low'])}, {format_number(p['ci95_high'])}]"))
                out.append(f"| {other} | {texts[0]} | {texts[1]} |")
        out.append("")
    out.append(clear_tally(comparison, label))
    return "\n".join(out)


def primary_text(comparison: dict[str, Any], primary: Primary) -> str:
    """Markdown: the primary comparison's P(improvement), IQM difference and reading (the report's first table)."""
    a, b = primary.labels
    row = primary_row(comparison, primary)
    head = (f"#### Primary comparison: {a} vs {b}, {primary.shift} level {primary.level} of {primary.env} "
            f"({METRIC_LABELS[primary.metric]})\n")
    if row is None:
        return head + "\nThese runs do not hold this comparison.\n"
    prob, diff = pair_text(row)
    return (head + "\n| runs | P(A > B) [95% CI] | IQM difference A - B [95% CI] | reading |\n|---|---|---|---|\n"
            f"| {row['runs_a']} vs {row['runs_b']} | {prob} | {diff} | {primary_reading(row, primary)} |\n\n"
            f"{primary_answer(comparison, primary)}\n")


def _setting(p: dict[str, Any]) -> str:
    name = "unshifted" if p["level"] == 0 else ("all shifts" if p["shift"] == "all" else p["shift"])
    return name if p["level"] == 0 else f"{name} {p['level']}"


def _oriented(rows: list[dict[str, Any]], env: str, pair: tuple[str, str],
              metric: str | None = None) -> list[dict[str, Any]]:
    """The improvement rows of ``env`` comparing ``pair`` as (label_a, label_b), of one metric if given."""
    return [p for p in rows if p["env"] == env and (p["label_a"], p["label_b"]) == pair
            and (metric is None or p["metric"] == metric)]


def clear_tally(comparison: dict[str, Any], label: str = "rims") -> str:
    """Markdown: per env and other label, the settings where a comparison with ``label`` has a 95% CI of
    P(improvement) entirely above 0.5 (``label`` ahead) or entirely below (``label`` behind)."""
    clear, made = clear_comparisons(comparison)
    mine = [p for p in clear if label in (p["label_a"], p["label_b"])]
    out = [f"#### Comparisons with {label} whose 95% CI excludes 0.5 ({len(mine)} of the {len(clear)} clear ones; "
           f"{made} comparisons in all, not adjusted for multiplicity)\n",
           f"| env | other label | metric | {label} ahead | {label} behind |", "|---|---|---|---|---|"]
    keys = sorted({(p["env"], p["label_b"] if p["label_a"] == label else p["label_a"], p["metric"]) for p in mine})
    for env, other, metric in keys:
        cells = []
        for pair in ((label, other), (other, label)):
            rows = _oriented(mine, env, pair, metric)
            cells.append(f"{len(rows)}: " + ", ".join(_setting(p) for p in rows) if rows else "0")
        out.append(f"| {env} | {other} | {METRIC_LABELS[metric]} | {cells[0]} | {cells[1]} |")
    return "\n".join(out) + "\n"


def _named(rows: list[dict[str, Any]], most: int = 3) -> str:
    """`` (setting, metric: P = .. [CI], IQM difference .. [CI]; ...)`` for up to ``most`` improvement rows; beyond
    that a pointer to findings.md's tally, which names every one; empty for none."""
    if not rows:
        return ""
    if len(rows) > most:
        return " (each named in findings.md)"
    texts = ((p, *pair_text(p)) for p in rows)
    return " (" + "; ".join(f"{_setting(p)}, {METRIC_LABELS[p['metric']]}: P = {prob}, IQM difference {diff}"
                            for p, prob, diff in texts) + ")"


def in_words(comparison: dict[str, Any], primary: Primary | None, label: str = "rims") -> str:
    """The README's Findings, generated: the primary answer first (when the study declares one), then per env
    and other label how many settings show ``label`` ahead or behind with a 95% CI of P excluding 0.5, out
    of every comparison made, unadjusted: leads beside the one planned answer. The settings with ``label``
    ahead are named with their P and IQM difference when there are three or fewer against one label, so a
    rare lead in the hypothesis's direction is never only a count."""
    clear, made = clear_comparisons(comparison)
    out = [primary_answer(comparison, primary), ""] if primary is not None else []
    mine = [p for p in clear if label in (p["label_a"], p["label_b"])]
    out.append(f"{'Beyond it, every' if primary is not None else 'Every'} comparison of {label} whose 95% CI of "
               f"P(improvement) excludes 0.5, of {made} comparisons made (every pair of labels in every setting and "
               f"pooled level, not adjusted for multiplicity, so leads rather than findings):")
    out.append("")
    for env in sorted({p["env"] for p in comparison["improvement"]}):
        others = sorted({p["label_b"] for p in comparison["improvement"] if p["env"] == env and p["label_a"] == label})
        counts = []
        for other in others:
            ahead, behind = (_oriented(mine, env, pair) for pair in ((label, other), (other, label)))
            settings = len(_oriented(comparison["improvement"], env, (label, other)))
            counts.append(f"ahead of {other} in {len(ahead)}{_named(ahead)} and behind in {len(behind)} of "
                          f"{settings} settings")
        out.append(f"- {env}: {label} " + ("; ".join(counts) if counts else "is not compared") + ".")
    return "\n".join(out) + "\n"


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """A compare CSV's rows with numbers as numbers and empty cells as None; UserError unless it has
    ``columns`` (what this rims-rl's compare writes)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    lacking = [c for c in columns if c not in (reader.fieldnames or [])]
    if lacking:
        raise UserError(f"{path} is not a {path.name} of this rims-rl (no column {lacking[0]!r}); "
                        f"run `rims-rl compare` or `report` again")

    def value(key: str, text: str) -> Any:
        if key in TEXT_COLUMNS:
            return text
        if text == "":
            return None
        return int(text) if key in ("level", "runs", "tasks", "runs_a", "runs_b", "seed", "episodes") else float(text)

    try:
        return [{k: value(k, v) for k, v in row.items()} for row in rows]
    except (TypeError, ValueError) as e:
        raise UserError(f"{path} is not a compare table of rims-rl ({e})") from None


def read_tables(path: str | Path) -> dict[str, Any]:
    """``summary``, ``improvement`` and ``scores``: from compare.json, or from a published folder's compare.csv,
    improvement.csv and scores.csv (what ``rims-rl report --out`` writes; no scores if it lacks scores.csv)."""
    path = Path(path)
    if not path.is_dir():
        return read_comparison(path)
    scores = path / "scores.csv"
    return {"summary": _csv_rows(path / "compare.csv", COMPARE_COLUMNS),
            "improvement": _csv_rows(path / "improvement.csv", IMPROVEMENT_COLUMNS),
            "scores": _csv_rows(scores, SCORES_COLUMNS) if scores.is_file() else []}


def check_label(comparison: dict[str, Any], label: str) -> None:
    """UserError unless ``label`` is one of the compared labels."""
    labels = sorted({s["label"] for s in comparison["summary"]})
    if label not in labels:
        raise UserError(f"--label {label!r} is not a compared label; valid: {', '.join(labels) or 'none (no rows)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", help="compare.json written by `rims-rl compare`, or a folder with the "
                                           "compare.csv, improvement.csv and scores.csv that `rims-rl report --out` "
                                           "writes")
    parser.add_argument("--label", default="rims", help="the label whose probability of improvement is shown")
    parser.add_argument("--study", help="a study (grid) file whose primary comparison is shown first")
    parser.add_argument("--in-words", action="store_true",
                        help="print only the findings in words for a README: the primary answer, then a tally of "
                             "the comparisons with --label whose CI excludes 0.5")
    args = parser.parse_args()
    try:
        comparison = read_tables(args.comparison)
        check_label(comparison, args.label)
        primary = read_primary(args.study) if args.study else None
        if args.study and primary is None:
            raise UserError(f"study file {args.study} declares no primary comparison")
        if args.in_words:
            print(in_words(comparison, primary, args.label), end="")
            return
        if primary is not None:
            print(primary_text(comparison, primary))
        print(findings(comparison, args.label))
    except UserError as e:
        sys.exit(f"findings.py: {e}")


if __name__ == "__main__":
    main()
