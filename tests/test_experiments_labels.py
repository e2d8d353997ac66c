"""Labels (named variants of a config) and capacity matching (match: state | params)."""
import csv
import json

import pytest
import yaml

from agents.experiments.config import load_config
from agents.experiments.matching import matched_config, run_configs
from agents.experiments.runs import read_run_config, run_dir_for, run_state
from agents.experiments.sweep.grid import merge_grid, plan_sweep, read_grid_file
from agents.experiments.train import build_policy_for
from agents.experiments.validation import resolve_config, run_config
from agents.sizing import core_parameters, matched_hidden_size, rnn_parameters
from rims_rl.errors import UserError


def test_a_label_names_the_run_dir_and_the_config(tmp_path, run_main, tiny_config):
    cfg = tiny_config(tmp_path)
    assert run_main(["train", "--config", cfg, "--core", "rims", "--label", "rims-k1", "--set", "cores.rims.k=1",
                     "--logdir", tmp_path / "runs", "--timesteps", 32, "--no-progress"]) == 0
    run = run_dir_for(tmp_path / "runs", "RedBallDistractors-v0", "rims-k1", 0)
    written = read_run_config(run)
    assert written["label"] == "rims-k1" and written["core"] == "rims" and written["cores"]["rims"]["k"] == 1
    assert written["core_parameters"] == core_parameters(build_policy_for(written))


@pytest.mark.parametrize("argv, message", [
    (["--core", "rims", "lstm", "--label", "x"], "--label x names one variant; give one --core with it"),
    (["--core", "rims", "--label", "a/b"], "label must be a name of letters"),
    (["--core", "rims", "--label", ".hidden"], "label must be a name of letters"),
    (["--core", "lstm", "--match", "sizes"], "invalid choice: 'sizes'"),
])
def test_bad_labels_and_matches_are_one_line(tmp_path, refused, tiny_config, argv, message):
    refused(["train", "--config", tiny_config(tmp_path), *argv, "--logdir", tmp_path / "runs", "--no-progress"],
            [message])
    assert not (tmp_path / "runs").exists()


def test_an_ablation_is_compared_beside_its_core(tmp_path, run_main, write_run):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "rims", seed, {"none": 0.9, "distractors": 0.8, "size": 0.6})
        write_run(root, "rims", seed, {"none": 0.9, "distractors": 0.4, "size": 0.6}, label="rims-k3",
                  changes={"cores.rims.k": 3})
    assert run_main(["compare", root, "--out", tmp_path / "cmp", "--reps", 20]) == 0
    with open(tmp_path / "cmp" / "improvement.csv") as f:
        rows = [r for r in csv.DictReader(f) if (r["shift"], r["level"]) == ("distractors", "1")]
    row = next(r for r in rows if r["label_a"] == "rims")
    assert (row["label_b"], row["core_a"], row["core_b"]) == ("rims-k3", "rims", "rims")
    assert float(row["probability"]) == 1.0 and float(row["difference"]) == pytest.approx(0.4)
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())["summary"]
    assert {(s["label"], s["core"]) for s in summary} == {("rims", "rims"), ("rims-k3", "rims")}


def test_runs_of_one_label_that_differ_beyond_the_seed_name_the_dotted_key(tmp_path, refused, write_run):
    root = tmp_path / "runs"
    write_run(root, "rims", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    write_run(root, "rims", 1, {"none": 0.9, "distractors": 0.8, "size": 0.6}, changes={"cores.rims.k": 3})
    refused(["compare", root, "--out", tmp_path / "cmp"], ["differ in cores.rims.k: 4 vs 3",
                                                            "give each variant its own label"])


def test_run_dirs_written_before_labels_keep_working(tmp_path, write_run):
    run = write_run(tmp_path / "runs", "lstm", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    old = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("label", "match"):
        del old[key]
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = read_run_config(run)
    assert (cfg["label"], cfg["match"]) == ("lstm", "none")
    planned = run_config({**cfg, "label": None}, "lstm", 0)
    assert run_state(run, planned) == "resume"  # the same run: no config difference


def test_grid_labels_plan_variants_and_match_the_lstm_to_the_grids_rims(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"base": "demo", "timesteps": 64}))
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({
        "config": "tiny.yaml", "cores": ["lstm"], "seeds": [0, 1],
        "labels": {"rims": {"core": "rims", "set": {"policy_kwargs": {"input_rows": True}}},
                   "rims-k3": {"core": "rims", "set": {"cores.rims.k": 3}},
                   "lstm-matched": {"core": "lstm", "set": {"match": "params"}}},
        "primary": {"env": "RedBallDistractors-v0", "shift": "distractors", "level": 3, "cores": ["rims", "lstm"]},
    }))
    grid = read_grid_file(grid_file)
    assert grid.primary.labels == ("rims", "lstm")
    plan = plan_sweep(merge_grid(grid), tmp_path / "runs")
    assert sorted({p.run_dir.parent.name for p in plan}) == ["lstm", "lstm-matched", "rims", "rims-k3"]
    assert len(plan) == 8
    by_label = {p.cfg["label"]: p.cfg for p in plan if p.cfg["seed"] == 0}
    assert by_label["rims-k3"]["cores"]["rims"]["k"] == 3 and by_label["lstm"]["cores"]["lstm"]["hidden_size"] == 192
    # lstm-matched is sized against the grid's rims label (with input rows), within 5% of its core parameters
    rims = core_parameters(build_policy_for(by_label["rims"]))
    matched = core_parameters(build_policy_for(by_label["lstm-matched"]))
    assert abs(matched - rims) <= 0.05 * rims and by_label["lstm-matched"]["cores"]["lstm"]["hidden_size"] != 192
    picked = plan_sweep(merge_grid(grid, labels=["rims-k3"]), tmp_path / "runs")
    assert {p.cfg["label"] for p in picked} == {"rims-k3"}
    # a sweep of lstm-matched alone (--label) sizes it against the same rims label as the whole grid does
    alone = plan_sweep(merge_grid(grid, labels=["lstm-matched"]), tmp_path / "runs")
    assert [p.cfg for p in alone if p.cfg["seed"] == 0] == [by_label["lstm-matched"]]
    with_k3 = plan_sweep(merge_grid(grid, labels=["lstm-matched", "rims-k3"]), tmp_path / "runs")
    assert [p.cfg for p in with_k3 if p.cfg["seed"] == 0 and p.cfg["label"] == "lstm-matched"] == \
        [by_label["lstm-matched"]]
    with pytest.raises(UserError, match="--label nope is not a label of the grid file; its labels: lstm, lstm-matched, rims, rims-k3"):
        plan_sweep(merge_grid(grid, labels=["nope"]), tmp_path / "runs")


@pytest.mark.parametrize("text, message", [
    ({"labels": {"lstm": {"core": "lstm"}}, "cores": ["lstm"]}, "is also a core of the grid"),
    ({"labels": {"a": {"set": {}}}}, "must be a mapping with a core"),
    ({"labels": {"a": {"core": "transformer"}}}, "unknown core 'transformer'"),
    ({"labels": {"a": {"core": "rims", "colour": 1}}}, "unknown key 'colour'"),
    ({"labels": {"a b": {"core": "rims"}}}, "must be a name of letters"),
    ({"labels": []}, "labels must be a mapping"),
    ({"primary": {"env": "E", "shift": "all", "level": 1}}, "primary lacks labels"),
])
def test_grid_label_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(text))
    with pytest.raises(UserError, match=message):
        read_grid_file(path)


@pytest.mark.parametrize("rims", [
    {"num_units": 6, "k": 4, "unit_size": 32, "cell": "gru"},
    {"num_units": 6, "k": 4, "unit_size": 32, "cell": "lstm"},
    {"num_units": 4, "k": 2, "unit_size": 64, "cell": "gru"},
    {"num_units": 8, "k": 3, "unit_size": 16, "cell": "lstm", "num_comm_heads": 1},
])
@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_params_matching_comes_within_5_percent_of_several_rims_cores(rims, core):
    base = resolve_config("minigrid")
    for key, value in rims.items():
        base["cores"]["rims"][key] = value
    cfg = matched_config(run_config({**base, "match": "params"}, core, 0))
    target = core_parameters(build_policy_for(run_config(base, "rims", 0)))
    got = core_parameters(build_policy_for(cfg))
    assert abs(got - target) <= 0.05 * target, (got, target)


def test_state_matching_and_the_closed_form():
    base = resolve_config("minigrid")
    cfg = matched_config(run_config({**base, "match": "state"}, "gru", 0))
    assert cfg["cores"]["gru"]["hidden_size"] == 6 * 32
    assert matched_config(run_config({**base, "match": "params"}, "none", 0)) == run_config(
        {**base, "match": "params"}, "none", 0)  # match sizes lstm and gru only
    for cell in ("lstm", "gru"):
        for target in (5_000, 151_360, 1_000_000):
            h = matched_hidden_size(cell, 128, target)
            assert all(abs(rnn_parameters(cell, 128, h) - target) <= abs(rnn_parameters(cell, 128, other) - target)
                       for other in (h - 1, h + 1) if other >= 1)


def test_run_configs_give_one_run_per_core_and_seed_with_labels():
    configs = run_configs(load_config("demo") | {"env": "RedBallDistractors-v0"}, ["rims", "lstm", "rims"], [0, 1, 0])
    assert [(c["label"], c["seed"]) for c in configs] == [("rims", 0), ("rims", 1), ("lstm", 0), ("lstm", 1)]


def test_a_task_can_change_one_label_only(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"base": "demo", "timesteps": 64}))
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({
        "config": "tiny.yaml", "cores": ["lstm"], "seeds": [0],
        "labels": {"rims": {"core": "rims", "set": {"policy_kwargs": {"input_rows": True}}}},
        "tasks": [{"env": "PickupDistractors-v0",
                   "labels": {"rims": {"set": {"policy_kwargs.instruction_row": True}}}},
                  {"env": "MiniGrid-DoorKey-5x5-v0"}]}))
    plan = plan_sweep(merge_grid(read_grid_file(grid_file)), tmp_path / "runs")
    rows = {(p.cfg["env"], p.cfg["label"]): p.cfg["policy_kwargs"] for p in plan}
    assert rows[("PickupDistractors-v0", "rims")] == {"input_rows": True, "instruction_row": True}
    assert rows[("MiniGrid-DoorKey-5x5-v0", "rims")] == {"input_rows": True}
    assert rows[("PickupDistractors-v0", "lstm")] == {}
    grid_file.write_text(yaml.safe_dump({"cores": ["lstm"], "tasks": [
        {"env": "PickupDistractors-v0", "labels": {"rims": {"set": {"seed": 1}}}}]}))
    with pytest.raises(UserError, match="labels.rims is not a label of the grid; its labels: lstm"):
        plan_sweep(merge_grid(read_grid_file(grid_file)), tmp_path / "runs")
