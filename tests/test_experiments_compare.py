"""compare: rliable aggregates and probability of improvement, scale-changing shifts, CIs only with
several runs, plots."""
import csv
import json
import warnings

import matplotlib
import numpy as np
import pytest

from agents.experiments.compare import (aggregate_scores, compare_runs, improvement, mirrored,
                                        probability_of_improvement)
from agents.experiments.plots import plot_compare, runs_label
from agents.experiments.runs import find_run_dirs

SCORES_X = np.array([[0.9, 0.4, 0.7], [0.8, 0.5, 0.6], [0.7, 0.45, 0.9], [0.95, 0.3, 0.8]])
SCORES_Y = np.array([[0.1, 0.5, 0.6], [0.95, 0.2, 0.3], [0.2, 0.4, 0.7], [0.5, 0.1, 0.65]])


def _rliable_estimates(score_dict, func, reps, seed):
    """rliable called directly; its bootstrap draws from numpy's global RNG, so that is what is seeded."""
    from rliable import library

    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return library.get_interval_estimates(score_dict, func, reps=reps)


def test_iqm_and_its_ci_match_rliable_for_one_setting_and_the_median_is_over_runs():
    from rliable import metrics

    row = aggregate_scores(SCORES_X, "success_rate", reps=300, seed=3)
    points, _ = _rliable_estimates({"x": SCORES_X}, metrics.aggregate_iqm, 300, 3)
    # by hand: the 12 scores sorted, the middle 6 (0.5, 0.6, 0.7, 0.7, 0.8, 0.8) averaged
    assert row["iqm"] == pytest.approx(points["x"]) and row["iqm"] == pytest.approx(4.1 / 6)
    assert row["iqm_ci95_low"] < row["iqm"] < row["iqm_ci95_high"]
    assert row["mean"] == pytest.approx(SCORES_X.mean())
    # the median over runs of each run's mean over the settings (not rliable's median of the setting means)
    assert row["median"] == pytest.approx(np.median(SCORES_X.mean(axis=1)))
    assert row["optimality_gap"] == pytest.approx(np.mean(1 - np.minimum(SCORES_X, 1)))
    assert aggregate_scores(SCORES_X, "return", 50, 0)["optimality_gap"] is None  # no target for raw returns
    one = SCORES_X[:, :1]
    row = aggregate_scores(one, "success_rate", reps=300, seed=3)
    _, cis = _rliable_estimates({"x": one}, metrics.aggregate_iqm, 300, 3)
    assert (row["iqm_ci95_low"], row["iqm_ci95_high"]) == pytest.approx(tuple(np.ravel(cis["x"])))
    assert row["median"] == pytest.approx(0.85)  # seeds 0.9, 0.8, 0.7, 0.95; their mean is 0.8375


def test_probability_of_improvement_matches_rliable_and_carries_the_iqm_difference():
    from rliable import metrics

    p, low, high = probability_of_improvement(SCORES_X, SCORES_Y, reps=200, seed=5)
    points, _ = _rliable_estimates({"xy": (SCORES_X, SCORES_Y)}, metrics.probability_of_improvement, 200, 5)
    assert p == pytest.approx(points["xy"]) and low <= p <= high
    # by definition: over all (run of X, run of Y) pairs per task, wins + ties / 2, averaged over tasks
    x, y = SCORES_X[:, None, :], SCORES_Y[None, :, :]
    assert p == pytest.approx(np.mean((x > y) + 0.5 * (x == y)))
    _, cis = _rliable_estimates({"xy": (SCORES_X[:, :1], SCORES_Y[:, :1])}, metrics.probability_of_improvement,
                                200, 5)
    one = probability_of_improvement(SCORES_X[:, :1], SCORES_Y[:, :1], reps=200, seed=5)
    assert one[1:] == pytest.approx(tuple(np.ravel(cis["xy"])))  # one setting: rliable's CI
    row = improvement(SCORES_X, SCORES_Y, reps=200, seed=5)
    assert row["difference"] == pytest.approx(metrics.aggregate_iqm(SCORES_X) - metrics.aggregate_iqm(SCORES_Y))
    assert row["difference_ci95_low"] <= row["difference"] <= row["difference_ci95_high"]
    uneven = probability_of_improvement(SCORES_X, SCORES_Y[:3], reps=200, seed=5)  # 4 runs vs 3
    assert uneven[1] <= uneven[0] <= uneven[2]
    single = improvement(SCORES_X[:1], SCORES_Y[:1], reps=200, seed=5)
    assert single["ci95_low"] is None and single["difference_ci95_low"] is None  # one run each: no CI
    pair = {"label_a": "a", "label_b": "b", "core_a": "rims", "core_b": "lstm", "runs_a": 4, "runs_b": 3}
    assert mirrored({**pair, **row}) == {
        "label_a": "b", "label_b": "a", "core_a": "lstm", "core_b": "rims", "runs_a": 3, "runs_b": 4,
        "probability": pytest.approx(1 - row["probability"]),
        "ci95_low": pytest.approx(1 - row["ci95_high"]), "ci95_high": pytest.approx(1 - row["ci95_low"]),
        "difference": -row["difference"], "difference_ci95_low": -row["difference_ci95_high"],
        "difference_ci95_high": -row["difference_ci95_low"]}


def _two_core_runs(write_run, root, seeds=(0, 1)):
    for seed in seeds:
        write_run(root, "rims", seed, {"none": 0.9, "distractors": 0.8 - 0.1 * seed, "size": 0.6}, size_return=0.2)
        write_run(root, "lstm", seed, {"none": 0.85, "distractors": 0.5 + 0.1 * seed, "size": 0.5}, size_return=5.0)
    return find_run_dirs([root])


def test_size_is_excluded_from_pooled_raw_returns_but_kept_for_success_and_normalized_score(tmp_path, write_run):
    comparison = compare_runs(_two_core_runs(write_run, tmp_path), reps=50)
    rows = comparison["summary"]
    assert not [s for s in rows if s["shift"] == "size" and s["metric"] == "return"]
    pooled_return_l3 = [s for s in rows if s["shift"] == "all" and s["level"] == 3 and s["metric"] == "return"]
    assert pooled_return_l3 == []  # level 3 holds only size: nothing left to pool on raw returns
    pooled = {(s["core"], s["metric"]): s for s in rows if s["shift"] == "all" and s["level"] == 3}
    assert pooled[("rims", "success_rate")]["iqm"] == pytest.approx(0.6)
    assert pooled[("lstm", "normalized_score")]["tasks"] == 1
    # a size-like shift with huge returns (5.0 per success) would dominate a pooled return otherwise
    assert max(s["iqm"] for s in rows if s["metric"] == "return") <= 1.0


def test_compare_writes_improvement_csv_with_cis_for_several_runs(tmp_path, run_main, write_run):
    _two_core_runs(write_run, tmp_path / "runs")
    assert run_main(["compare", tmp_path / "runs", "--out", tmp_path / "cmp", "--reps", 50]) == 0
    with open(tmp_path / "cmp" / "improvement.csv") as f:
        poi = list(csv.DictReader(f))
    assert list(poi[0]) == ["env", "shift", "level", "metric", "label_a", "label_b", "core_a", "core_b", "runs_a",
                            "runs_b", "probability",
                            "ci95_low", "ci95_high", "difference", "difference_ci95_low", "difference_ci95_high"]
    assert not [r for r in poi if r["shift"] != "all" and r["level"] == "0"]  # the unshifted setting once
    assert len([r for r in poi if r["level"] == "0"]) == 2  # rims vs lstm and its mirror
    row = next(r for r in poi if (r["shift"], r["level"], r["core_a"]) == ("distractors", "1", "rims"))
    # rims 0.8/0.7 vs lstm 0.5/0.6 on success: every rims run beats every lstm run
    assert float(row["probability"]) == 1.0 and row["metric"] == "success_rate"
    mirror = next(r for r in poi if (r["shift"], r["level"], r["core_a"]) == ("distractors", "1", "lstm"))
    assert float(mirror["probability"]) == 0.0
    # IQM success 0.75 vs 0.55: the difference, and its negation in the mirrored row
    assert float(row["difference"]) == pytest.approx(0.2) and float(mirror["difference"]) == pytest.approx(-0.2)
    assert float(row["difference_ci95_low"]) <= 0.2 <= float(row["difference_ci95_high"])
    assert float(row["ci95_low"]) <= float(row["probability"]) <= float(row["ci95_high"])
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all(s["iqm_ci95_low"] is not None for s in data["summary"])  # two runs per core: CIs everywhere
    assert (tmp_path / "cmp" / "profiles.png").stat().st_size > 1000
    # performance profile over the shifted settings (distractors=1, size=3) = rliable's, with CI bands
    from rliable import library

    profile = data["profiles"]["RedBallDistractors-v0"]
    rims = profile["labels"]["rims"]
    scores = np.array([[0.8, 0.6], [0.7, 0.6]])  # per-run success rates of the fixture's rims runs
    points, _ = library.create_performance_profile({"rims": scores}, np.array(profile["taus"]), reps=10)
    assert profile["metric"] == "success_rate" and rims["profile"] == pytest.approx(list(points["rims"]))
    assert rims["ci95_low"] is not None and len(rims["ci95_high"]) == len(profile["taus"])


def test_seeds_trained_on_different_devices_are_compared(tmp_path, write_run):
    import yaml

    for seed in (0, 1):
        run = write_run(tmp_path / "runs", "rims", seed, {"none": 0.9, "distractors": 0.8, "size": 0.6})
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["device"] = "cpu" if seed else "cuda"  # `train --device` writes it; where a run trains, not what
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    runs = compare_runs(find_run_dirs([tmp_path / "runs"]), reps=20)["runs"]
    assert sorted(r["seed"] for r in runs) == [0, 1]


def test_bad_episode_and_env_counts_are_user_errors():
    from agents.experiments.evaluation.episodes import run_episodes
    from rims_rl.errors import UserError

    with pytest.raises(UserError, match="episodes must be >= 1"):
        run_episodes(None, "RedBallDistractors-v0", None, 0)
    with pytest.raises(UserError, match="n_envs must be >= 1"):
        run_episodes(None, "RedBallDistractors-v0", None, 5, n_envs=0)


def test_one_seed_prints_no_ci_and_stores_none(tmp_path, capsys, run_main, write_run):
    _two_core_runs(write_run, tmp_path / "runs", seeds=(0,))
    assert run_main(["compare", tmp_path / "runs", "--out", tmp_path / "cmp", "--reps", 50]) == 0
    assert "1 seed: no CI" in capsys.readouterr().out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all(s[k] is None for s in data["summary"] for k in s if k.endswith("_ci95_low"))


def _bands(summary, tmp_path):
    """The CI bands (PolyCollections) plot_compare draws, per axes."""
    captured = {}
    original = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        captured["bands"] = [sum(isinstance(c, matplotlib.collections.PolyCollection) for c in ax.collections)
                             for ax in fig.axes if ax.get_visible()]
        captured["legends"] = [t.get_text() for ax in fig.axes if ax.get_legend()
                               for t in ax.get_legend().get_texts()]
        return original(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = spy
    try:
        plot_compare(summary, tmp_path / "c.png")
    finally:
        matplotlib.figure.Figure.savefig = original
    return captured


def test_plots_draw_ci_bands_only_where_there_are_several_runs(tmp_path):
    def rows(runs, ci):
        return [{"env": "E", "label": c, "core": c, "shift": sh, "runs": runs, "level": lv, "metric": "success_rate",
                 "iqm": 1.0 - lv / 4, "iqm_ci95_low": 0.5 if ci else None, "iqm_ci95_high": 1.0 if ci else None}
                for c in ("rims", "lstm") for sh in ("all", "size") for lv in (0, 1, 2)]

    single = _bands(rows(1, False), tmp_path)
    several = _bands(rows(3, True), tmp_path)
    assert single["bands"] == [0, 0] and several["bands"] == [2, 2]
    assert "lstm (1 run, no CI)" in single["legends"] and "lstm (3 runs)" in several["legends"]
    assert runs_label("rims", 1) == "rims (1 run, no CI)" and runs_label("rims", 2) == "rims (2 runs)"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_csv_has_every_run_and_setting_and_a_run_below_chance_keeps_a_negative_score(tmp_path, run_main,
                                                                                             write_run):
    root = tmp_path / "runs"
    write_run(root, "rims", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    write_run(root, "rims", 1, {"none": 0.2, "distractors": 0.1, "size": 0.0})  # below the random policy (0.4)
    write_run(root, "lstm", 0, {"none": 0.8, "distractors": 0.5, "size": 0.5})
    write_run(root, "lstm", 1, {"none": 0.7, "distractors": 0.6, "size": 0.5})
    assert run_main(["compare", root, "--out", tmp_path / "cmp", "--reps", 50]) == 0
    with open(tmp_path / "cmp" / "scores.csv") as f:
        scores = list(csv.DictReader(f))
    assert list(scores[0]) == ["env", "label", "core", "seed", "shift", "level", "success_rate", "mean_return",
                               "normalized_score", "random_success_rate", "random_return", "episodes"]
    assert len(scores) == 4 * 3  # 4 runs x 3 settings
    # one reference for the env: the mean unshifted return of all runs (0.65) above the random policy's (0.4)
    by_key = {(r["core"], r["seed"], r["shift"]): r for r in scores}
    bad = by_key[("rims", "1", "none")]
    assert float(bad["normalized_score"]) == pytest.approx((0.2 - 0.4) / (0.65 - 0.4))
    assert float(by_key[("lstm", "0", "distractors")]["normalized_score"]) == pytest.approx((0.5 - 0.35) / 0.25)
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    unshifted = {s["core"]: s for s in data["summary"]
                 if (s["shift"], s["level"], s["metric"]) == ("all", 0, "normalized_score")}
    assert set(unshifted) == {"rims", "lstm"}  # the core with a run below chance is not dropped
    assert unshifted["rims"]["mean"] == pytest.approx(((0.9 - 0.4) + (0.2 - 0.4)) / 2 / 0.25)
    # every number of a table comes from scores.csv: the rims IQM success at distractors 1 is that of its rows
    row = next(s for s in data["summary"] if (s["core"], s["shift"], s["level"], s["metric"])
               == ("rims", "distractors", 1, "success_rate"))
    assert row["iqm"] == pytest.approx(np.mean([float(by_key[("rims", s, "distractors")]["success_rate"])
                                                for s in ("0", "1")]))


def test_settings_some_runs_lack_are_named_in_a_warning(tmp_path, capsys, run_main, write_run):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "rims", seed, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    run = write_run(root, "lstm", 0, {"none": 0.8, "distractors": 0.5, "size": 0.5})
    data = json.loads((run / "eval" / "results.json").read_text())
    data["results"] = [r for r in data["results"] if r["shift"] != "size"]
    (run / "eval" / "results.json").write_text(json.dumps(data))
    assert run_main(["compare", root, "--out", tmp_path / "cmp", "--reps", 20]) == 0
    err = capsys.readouterr().err
    assert "warning: RedBallDistractors-v0: size level 3 not evaluated in every run; left out" in err
