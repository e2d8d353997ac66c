"""End to end: the demo (train + evaluate + compare), evaluate, compare, record, --help, defaults."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import imageio.v3 as iio
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.experiments.config import load_preset
from agents.experiments.record import ROW_HEIGHT, TEXT_HEIGHT
from agents.experiments.runs import read_num_timesteps
from envs import DEFAULT_ENV_ID

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, tiny_config, run_main):
    """A tiny demo: rims and lstm trained 64 steps, evaluated unshifted and at distractors=1."""
    root = tmp_path_factory.mktemp("demo")
    cfg = tiny_config(root)
    code = run_main(["demo", "--config", cfg, "--logdir", root / "runs", "--episodes", 2,
                     "--shifts", "distractors=1", "--no-progress"])
    assert code == 0
    return root / "runs"


def _run(demo_dir, core):
    (run,) = (demo_dir).glob(f"*/{core}/seed0")
    return run


def test_demo_writes_runs_results_comparison(demo_dir):
    for core in ("rims", "lstm"):
        run = _run(demo_dir, core)
        for name in ("config.yaml", "model.zip", "checkpoints/last.zip", "eval/results.csv", "eval/results.json",
                     "eval/returns.png"):
            assert (run / name).is_file(), run / name
        assert read_num_timesteps(run / "model.zip") == 64
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["core"] == core and cfg["seed"] == 0 and cfg["env"]  # fully resolved: env filled in
        assert set(cfg) == set(load_preset("minigrid")) | {"core_parameters"}  # recorded by training
        assert cfg["label"] == core and cfg["match"] == "none" and cfg["core_parameters"] > 1000
    with open(demo_dir / "compare" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["core"] for r in rows} == {"rims", "lstm"}
    assert {r["level"] for r in rows} == {"0", "1"} and {r["shift"] for r in rows} == {"all", "distractors"}
    assert (demo_dir / "compare" / "compare.png").stat().st_size > 1000
    assert (demo_dir / "compare" / "improvement.csv").is_file()
    # the demo ends by writing the report and printing its path
    assert (demo_dir / "report.html").stat().st_size > 10_000 and (demo_dir / "report.md").is_file()


def test_demo_rerun_reuses_finished_runs(demo_dir, capsys, monkeypatch, tmp_path, run_main):
    from agents.experiments.commands import demo

    study = tmp_path / "report.md"  # the committed study report the demo points to
    study.write_text("# study")
    monkeypatch.setattr(demo, "STUDY_REPORTS", ((tmp_path / "missing.md", "a study not written yet"),
                                                (study, "the pilot study")))
    before = (_run(demo_dir, "rims") / "model.zip").stat().st_mtime_ns
    cfg = demo_dir.parent / "tiny.yaml"
    code = run_main(["demo", "--config", cfg, "--logdir", demo_dir, "--episodes", 2, "--shifts", "distractors=1",
                     "--no-progress"])  # the fixture's settings: other tests read these results
    out = capsys.readouterr().out
    assert code == 0
    assert "already trained" in out and f"tensorboard --logdir {demo_dir}" in out
    *_, report_line, study_line = out.strip().splitlines()
    assert report_line == f"report: {demo_dir / 'report.html'} (self-contained) and {demo_dir / 'report.md'}"
    assert study_line == f"the pilot study: {study}"
    assert (_run(demo_dir, "rims") / "model.zip").stat().st_mtime_ns == before


def test_demo_names_the_newest_committed_study_report_and_none_outside_a_checkout(monkeypatch, tmp_path):
    from agents.experiments.commands import demo

    # the repository's own: the fair study's report once it is published, the pilot's until then
    assert [path.relative_to(ROOT) for path, _ in demo.STUDY_REPORTS] == [
        Path("docs/results/fair/report.md"), Path("docs/results/distractors/report.md")]
    assert demo.STUDY_REPORTS[1][0].is_file()
    fair, pilot = tmp_path / "fair.md", tmp_path / "pilot.md"
    monkeypatch.setattr(demo, "STUDY_REPORTS", ((fair, "the fair study"), (pilot, "the pilot study")))
    assert demo.study_line() is None
    pilot.write_text("# pilot")
    assert demo.study_line() == f"the pilot study: {pilot}"
    fair.write_text("# fair")
    assert demo.study_line() == f"the fair study: {fair}"


def test_train_logs_rims_activation_scalars(demo_dir):
    tags = {}
    for core in ("rims", "lstm"):
        (events,) = (_run(demo_dir, core) / "tb").glob("train_1")
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags[core] = acc.Tags()["scalars"]
    assert "rollout_rims/active_frac_0" in tags["rims"] and "rollout_rims/switch_rate" in tags["rims"]
    assert not any(t.startswith("rollout_rims/") for t in tags["lstm"])
    assert "rollout/ep_rew_mean" in tags["rims"] or "train/loss" in tags["rims"]


def test_evaluate_writes_results_plot_and_tensorboard(demo_dir, tmp_path, capsys, run_main):
    run = _run(demo_dir, "rims")
    code = run_main(["evaluate", "--model", run, "--episodes", 2, "--shifts", "size=1", "floor_noise=2",
                     "--out", tmp_path / "ev", "--n-envs", 2])
    assert code == 0
    out = capsys.readouterr().out
    assert "norm. score" in out and "floor_noise" in out and "CI half-width of a success rate" in out
    with open(tmp_path / "ev" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["env", "shift", "level", "episodes", "mean_return", "std_return", "ci95_low",
                             "ci95_high", "success_rate", "success_ci95_low", "success_ci95_high", "mean_length",
                             "random_return", "random_success_rate", "normalized_score"]
    assert [(r["shift"], r["level"]) for r in rows] == [("none", "0"), ("size", "1"), ("floor_noise", "2")]
    for r in rows:
        assert int(r["episodes"]) == 2
        assert float(r["ci95_low"]) <= float(r["mean_return"]) <= float(r["ci95_high"])
        assert float(r["success_rate"]) in (0.0, 0.5, 1.0) and r["random_return"] != ""
    data = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert data["num_timesteps"] == 64
    for r in data["results"]:  # per-episode records with the paired reset seeds 1000, 1001
        assert [(e["index"], e["seed"]) for e in r["episode_records"]] == [(0, 1000), (1, 1001)]
        assert all(set(e) == {"index", "seed", "return", "success", "length"} for e in r["episode_records"])
    assert (tmp_path / "ev" / "returns.png").stat().st_size > 1000
    # the random baseline is cached beside the env's run dirs
    assert (run.parent.parent / "random_baseline.json").is_file()
    acc = EventAccumulator(str(run / "tb" / "eval"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "under_shift/size/level1/success_rate" in tags["scalars"] and "under_shift/ladder" in tags["images"]
    assert "under_shift/none/level0/mean_return" in tags["scalars"]
    # a group that TensorBoard sorts after the learning curves' (rims, rollout, time, train)
    assert all(tag.split("/")[0] == "under_shift" for tag in tags["scalars"] + tags["images"])
    # one scalar per setting at the training step (64), never the level as the step
    assert [e.step for e in acc.Scalars("under_shift/floor_noise/level2/mean_return")] == [64]


def test_compare_table_and_files(demo_dir, tmp_path, capsys, run_main):
    code = run_main(["compare", demo_dir, "--out", tmp_path / "cmp", "--reps", 100])
    assert code == 0
    out = capsys.readouterr().out
    assert "IQM" in out and "rims" in out and "lstm" in out and "1 seed: no CI" in out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["columns"][:8] == ["env", "label", "core", "shift", "level", "metric", "runs", "tasks"]
    # the demo evaluated unshifted + distractors=1: pooled rows and the distractors ladder, per core
    keys = {(s["core"], s["shift"], s["level"]) for s in data["summary"] if s["metric"] == "success_rate"}
    assert keys == {(c, sh, lv) for c in ("rims", "lstm") for sh in ("all", "distractors") for lv in (0, 1)}
    assert all(s["iqm_ci95_low"] is None for s in data["summary"])  # one seed: no CI
    with open(tmp_path / "cmp" / "improvement.csv") as f:
        poi = list(csv.DictReader(f))
    assert list(poi[0])[:10] == ["env", "shift", "level", "metric", "label_a", "label_b", "core_a", "core_b", "runs_a",
                                 "runs_b"]
    assert {(r["core_a"], r["core_b"]) for r in poi} == {("rims", "lstm"), ("lstm", "rims")}
    assert (tmp_path / "cmp" / "compare.png").is_file()


def test_record_gif_with_activation_strip(demo_dir, tmp_path, capsys, run_main):
    heights = {}
    for core in ("rims", "lstm"):
        out = tmp_path / f"{core}.gif"
        assert run_main(["record", "--model", _run(demo_dir, core), "--out", out, "--max-steps", 4]) == 0
        frames = iio.imread(out, index=None)  # [frames, H, W, 3]
        assert 1 <= frames.shape[0] <= 4
        heights[core] = frames.shape[1]
        text = capsys.readouterr().out
        assert ("with the RIMs activation strip" in text) == (core == "rims")
    # the strip under each rims frame: 3 RIMs (tiny config) x ROW_HEIGHT px + 2 px gap, and its legend line
    assert heights["rims"] - heights["lstm"] == 3 * ROW_HEIGHT + 2 + TEXT_HEIGHT


@pytest.mark.parametrize("command", ["train", "evaluate", "compare", "report", "record", "demo", "presets"])
def test_help_shows_defaults(command, capsys, run_main):
    assert run_main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "usage: rims-rl " + command in text
    if command != "presets":
        assert "(default:" in text


def test_no_arguments_runs_the_demo_with_its_defaults(monkeypatch, run_main):
    from agents.experiments.commands import demo

    calls = []
    monkeypatch.setattr(demo, "demo", lambda **kw: calls.append(kw))
    assert run_main([]) == 0
    assert calls and calls[0]["config"] == "demo" and list(calls[0]["cores"]) == ["rims", "lstm"]
    assert str(calls[0]["logdir"]) == "runs/demo"


def test_a_resumed_run_keeps_the_best_score_of_earlier_sessions(tmp_path):
    import json

    from agents.experiments.callbacks import PeriodicEvalCallback

    run = tmp_path / "run"
    run.mkdir()
    fresh = PeriodicEvalCallback(run, DEFAULT_ENV_ID, None, episodes=1, freq=32, seed=0)
    assert fresh.best == float("-inf")
    (run / "best_model.zip").write_bytes(b"a model")
    (run / "best_model.json").write_text(json.dumps({"mean_return": 0.75, "step": 64, "episodes": 1}))
    assert PeriodicEvalCallback(run, DEFAULT_ENV_ID, None, episodes=1, freq=32, seed=0).best == 0.75
    (run / "best_model.json").write_text("cut")  # an unreadable score: the next evaluation sets a new best
    assert PeriodicEvalCallback(run, DEFAULT_ENV_ID, None, episodes=1, freq=32, seed=0).best == float("-inf")


def test_train_with_periodic_evaluation_keeps_the_best_model(tmp_path, tiny_config, run_main):
    cfg = tiny_config(tmp_path)
    code = run_main(["train", "--config", cfg, "--core", "gru", "--logdir", tmp_path / "runs", "--eval-freq", 32,
                     "--eval-episodes", 1, "--eval-shifts", "distractors=1", "--no-progress"])
    assert code == 0
    (run,) = (tmp_path / "runs").glob("*/gru/seed0")
    assert (run / "best_model.zip").is_file()
    assert 32 <= read_num_timesteps(run / "best_model.zip") <= 64
    score = json.loads((run / "best_model.json").read_text())
    assert score["step"] == read_num_timesteps(run / "best_model.zip") and score["episodes"] == 1
    acc = EventAccumulator(str(run / "tb" / "train_1"))
    acc.Reload()
    assert {"validation/mean_return", "validation/success_rate"} <= set(acc.Tags()["scalars"])
    groups = sorted({tag.split("/")[0] for tag in acc.Tags()["scalars"]})
    assert groups[-1] == "validation" and "eval" not in groups  # TensorBoard shows it after the learning curves
    assert {e.step for e in acc.Scalars("validation/success_rate")} <= {32, 48, 64}  # at training steps


def test_evaluate_refuses_episode_seeds_past_the_largest_seed(demo_dir, tmp_path, capsys, run_main):
    run = _run(demo_dir, "rims")
    code = run_main(["evaluate", "--model", run, "--seed", 2**32 - 2, "--episodes", 3, "--out", tmp_path / "ev"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "last episode's reset seed" in err
    assert not (tmp_path / "ev").exists()
