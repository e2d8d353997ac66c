"""The README's Findings state what the published study's generated tables say (counts and cells)."""
import csv

import pytest
from pathlib import Path

from agents.experiments.compare_tables import pair_text
from agents.experiments.evaluation.tables import format_number
from agents.experiments.findings import clear_comparisons

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "results" / "distractors"


@pytest.fixture(scope="module")
def findings(load_script):
    """benchmarks/studies/findings.py, loaded as a module."""
    return load_script("benchmarks/studies/findings.py")


@pytest.fixture(scope="module")
def tables(findings):
    """The pilot study's published compare/improvement/scores tables."""
    return findings.read_tables(STUDY)


def _findings_text() -> str:
    readme = (ROOT / "README.md").read_text()
    return " ".join(readme.split("## Findings\n", 1)[1].split("\n## ", 1)[0].split())


def test_readme_findings_counts_are_the_generated_ones(tables):
    clear, made = clear_comparisons(tables)
    text = _findings_text()

    def count(a: str, b: str) -> int:
        return sum(p["label_a"] == a and p["label_b"] == b for p in clear)

    assert f"({made} comparisons, unadjusted, 5 seeds;" in text
    assert count("rims", "lstm") == count("rims", "gru") == 0 and "no comparison shows RIMs ahead" in text
    def on(env: str) -> int:
        return sum(p["label_a"] == "lstm" and p["label_b"] == "rims" and p["env"] == env for p in clear)

    pickup, redball = on("PickupDistractors-v0"), on("RedBallDistractors-v0")
    assert pickup + redball == count("lstm", "rims")
    assert f"behind the LSTM in {count('lstm', 'rims')} settings ({pickup} on the pickup task" in text
    assert f"; {redball} on RedBallDistractors-v0" in text
    assert f"behind the GRU in {count('gru', 'rims')};" in text
    assert f"ahead of the feed-forward core in {count('rims', 'none')} settings" in text


def test_readme_findings_quote_the_novel_distractors_cells(tables):
    improvement = tables["improvement"]
    text = _findings_text()

    def cell(a: str, b: str) -> str:
        p = next(p for p in improvement if p["env"] == "PickupDistractors-v0" and p["shift"] == "novel_distractors"
                 and p["level"] == 3 and p["metric"] == "success_rate" and p["label_a"] == a and p["label_b"] == b)
        return f"{format_number(p['probability'])} [{format_number(p['ci95_low'])}, {format_number(p['ci95_high'])}]"

    assert f"P = {cell('rims', 'none')}, though the IQM difference's CI" in text
    assert f"P(RIMs beats LSTM) = {cell('rims', 'lstm')} includes no difference" in text
    with open(STUDY / "scores.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["env"] == "PickupDistractors-v0"
                and r["shift"] == "novel_distractors" and r["level"] == "3"]
    assert len(rows) == 20 and all(float(r["success_rate"]) < float(r["random_success_rate"]) for r in rows)
    assert "every core is below the random policy" in text


def test_every_success_rate_aggregate_of_the_published_study_is_recomputed_from_scores_csv():
    import numpy as np
    from scipy.stats import trim_mean

    with open(STUDY / "scores.csv") as f:
        scores = list(csv.DictReader(f))
    with open(STUDY / "compare.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "success_rate"]
    assert len(rows) > 100
    for r in rows:
        mine = [s for s in scores if s["env"] == r["env"] and s["label"] == r["label"] and s["level"] == r["level"]
                and (r["shift"] in ("all", s["shift"]) or r["level"] == "0")]  # level 0 of a shift: unshifted
        by_run: dict[str, list[float]] = {}
        for s in mine:
            by_run.setdefault(s["seed"], []).append(float(s["success_rate"]))
        flat = [v for values in by_run.values() for v in values]
        assert len(by_run) == int(r["runs"]), r
        assert trim_mean(flat, 0.25) == pytest.approx(float(r["iqm"]), abs=1e-9), r
        assert np.mean(flat) == pytest.approx(float(r["mean"]), abs=1e-9), r
        assert np.median([np.mean(v) for v in by_run.values()]) == pytest.approx(float(r["median"]), abs=1e-9), r


def test_findings_in_words_tally_every_clear_comparison_with_rims_and_put_the_primary_answer_first(findings, tables):
    from agents.experiments.findings import Primary, primary_answer

    text = findings.in_words(tables, None)
    assert text.startswith("Every comparison of rims whose 95% CI of P(improvement) excludes 0.5, of 270 ")
    for env in ("PickupDistractors-v0", "RedBallDistractors-v0", "MiniGrid-DoorKey-5x5-v0"):
        line = next(line for line in text.splitlines() if line.startswith(f"- {env}: rims "))
        for other in ("gru", "lstm", "none"):
            rows = [p for p in tables["improvement"] if p["env"] == env and p["label_a"] == "rims"
                    and p["label_b"] == other]
            ahead = [p for p in rows if p["ci95_low"] is not None and p["ci95_low"] > 0.5]
            behind = sum(p["ci95_high"] is not None and p["ci95_high"] < 0.5 for p in rows)
            named = "" if not ahead else " (each named in findings.md)" if len(ahead) > 3 else " (" + "; ".join(
                f"{findings._setting(p)}, success rate: P = {pair_text(p)[0]}, IQM difference {pair_text(p)[1]}"
                for p in ahead) + ")"
            assert f"ahead of {other} in {len(ahead)}{named} and behind in {behind} of {len(rows)} settings" in line
    assert "ahead of lstm in 0 and behind in 14 of 19 settings" in text  # the README's pilot Findings
    # the one lead the paper's way is named with its numbers (the README's pilot Findings quote them)
    assert ("ahead of none in 1 (novel_distractors 3, success rate: P = 0.88 [0.6, 1], IQM difference 0.0625 "
            "[-0.00333, 0.111]) and behind in 0 of 19 settings") in text
    assert "ahead of none in 13 (each named in findings.md) and behind in 0 of 16" in text  # RedBall: too many
    primary = Primary("PickupDistractors-v0", "novel_distractors", 3, ("rims", "lstm"))
    with_primary = findings.in_words(tables, primary)
    assert with_primary.startswith(primary_answer(tables, primary) + "\n\nBeyond it, every comparison of rims")


def test_findings_clear_tally_lists_each_clear_comparison_with_rims_once_in_its_row_and_direction(findings, tables):
    clear, made = clear_comparisons(tables)
    mine = [p for p in clear if "rims" in (p["label_a"], p["label_b"])]
    lines = findings.clear_tally(tables).splitlines()
    assert lines[0] == (f"#### Comparisons with rims whose 95% CI excludes 0.5 ({len(mine)} of the {len(clear)} "
                        f"clear ones; {made} comparisons in all, not adjusted for multiplicity)")
    assert lines[2:4] == ["| env | other label | metric | rims ahead | rims behind |", "|---|---|---|---|---|"]
    rows = [line.strip("| ").split(" | ") for line in lines[4:]]
    ahead = sum(int(r[3].split(":")[0]) for r in rows)
    behind = sum(int(r[4].split(":")[0]) for r in rows)
    assert ahead == sum(p["label_a"] == "rims" for p in mine) and behind == sum(p["label_b"] == "rims" for p in mine)
    pickup_lstm = next(r for r in rows if r[:3] == ["PickupDistractors-v0", "lstm", "success rate"])
    assert pickup_lstm[3] == "0" and pickup_lstm[4].startswith("14: ")  # the README's pilot Findings
    assert len(pickup_lstm[4].split(", ")) == 14
