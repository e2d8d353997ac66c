"""Damaged results.json, config.yaml and compare.json: ``compare`` and ``report`` end in one line naming the
file and the field (exit 2), never in a traceback, and write nothing."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

SUCCESS = {"none": 0.8, "distractors": 0.5, "size": 0.3}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, write_run):
    """Four evaluated runs (lstm and rims, seeds 0 and 1) under one dir, written once per module."""
    root = tmp_path_factory.mktemp("evaluated")
    for core in ("lstm", "rims"):
        for seed in (0, 1):
            write_run(root, core, seed, SUCCESS)
    return root


@pytest.fixture
def runs(evaluated, tmp_path):
    """A copy of :func:`evaluated` this test may damage; (the dir, its first run)."""
    root = tmp_path / "runs"
    shutil.copytree(evaluated, root)
    (first,) = root.glob("*/lstm/seed0")
    return root, first


def _edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _assert_refused_and_nothing_written(refused, root, argv, words):
    before = sorted(p for p in root.rglob("*"))
    refused(argv, words)
    assert sorted(p for p in root.rglob("*")) == before


def _drop(key):
    return lambda row: row.pop(key)


RESULTS_DAMAGE = {
    "row without level": (lambda d: d["results"][1].pop("level"), "results[1].level is missing"),
    "row without shift": (lambda d: d["results"][2].pop("shift"), "results[2].shift is missing"),
    "null row": (lambda d: d["results"].__setitem__(1, None), "results[1] must be a mapping, got null"),
    "string level": (lambda d: d["results"][1].__setitem__("level", "one"), "results[1].level must be an integer"),
    "string return": (lambda d: d["results"][0].__setitem__("mean_return", "high"),
                      "results[0].mean_return must be a number"),
    "results not a list": (lambda d: d.__setitem__("results", {"none": 1}), "results must be a list"),
    "no rows": (lambda d: d.__setitem__("results", []), "results is an empty list"),
    "repeated setting": (lambda d: d["results"].append(dict(d["results"][1])), "results[3] repeats the setting"),
    "string episodes": (lambda d: d.__setitem__("episodes", "20"), "episodes must be an integer"),
}


@pytest.mark.parametrize("command", ["compare", "report"])
@pytest.mark.parametrize("damage", list(RESULTS_DAMAGE))
def test_a_damaged_results_file_is_one_line_naming_the_file_and_the_field(damage, command, runs, refused):
    root, first = runs
    change, words = RESULTS_DAMAGE[damage]
    path = first / "eval" / "results.json"
    _edit_json(path, change)
    _assert_refused_and_nothing_written(refused, root, [command, root, "--reps", 20], [str(path), words])


def test_a_results_file_that_is_not_a_mapping_is_one_line(runs, refused):
    root, first = runs
    path = first / "eval" / "results.json"
    path.write_text("[1, 2]")
    refused(["compare", root, "--reps", 20], [str(path), "must be a mapping, got a list"])


CONFIG_DAMAGE = {
    "string seed": (("seed",), "zero", "seed must be an integer, got 'zero'"),
    "string timesteps": (("timesteps",), "3000 steps", "timesteps must be an integer"),
    "env as a list": (("env",), ["a", "b"], "env must be a string, got a list"),
    "null core": (("core",), None, "core must be a string, got null"),
    "null n_steps": (("ppo", "n_steps"), None, "ppo.n_steps must be an integer"),
    "float episodes": (("eval", "episodes"), 2.5, "eval.episodes must be an integer"),
}


@pytest.mark.parametrize("command", ["compare", "report"])
@pytest.mark.parametrize("damage", list(CONFIG_DAMAGE))
def test_a_config_with_a_value_of_the_wrong_type_is_one_line_naming_the_key(damage, command, runs, refused):
    root, first = runs
    keys, value, words = CONFIG_DAMAGE[damage]
    path = first / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    node = cfg
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    path.write_text(yaml.safe_dump(cfg))
    _assert_refused_and_nothing_written(refused, root, [command, root, "--reps", 20], [str(path), words])


COMPARE_DAMAGE = {
    "null level": (lambda d: d["summary"][0].__setitem__("level", None), "summary[0].level must be an integer"),
    "row without core_a": (lambda d: d["improvement"][3].pop("core_a"), "improvement[3].core_a is missing"),
    "unknown metric": (lambda d: d["summary"][2].__setitem__("metric", "speed"), "summary[2].metric must be one of"),
    "string seed": (lambda d: d["runs"][1].__setitem__("seed", "1"), "runs[1].seed must be an integer"),
    "score without success": (lambda d: d["scores"][0].pop("success_rate"), "scores[0].success_rate is missing"),
    "null row": (lambda d: d["improvement"].__setitem__(0, None), "improvement[0] must be a mapping"),
    "short profile": (lambda d: next(iter(d["profiles"].values()))["labels"]["rims"]["profile"].pop(),
                      "labels.rims.profile has 20 values for 21 taus"),
    "summary not a list": (lambda d: d.__setitem__("summary", 3), "summary must be a list, got 3"),
    "left_out of numbers": (lambda d: d.__setitem__("left_out", {"E": [1]}), "left_out.E must be a list of strings"),
}


@pytest.mark.parametrize("damage", list(COMPARE_DAMAGE))
def test_a_damaged_compare_json_is_one_line_naming_the_field(damage, runs, run_main, refused, capsys):
    root, _ = runs
    assert run_main(["compare", root, "--reps", 20]) == 0
    capsys.readouterr()
    path = root / "compare" / "compare.json"
    change, words = COMPARE_DAMAGE[damage]
    _edit_json(path, change)  # newer than every results.json: the report reads it instead of comparing again
    _assert_refused_and_nothing_written(refused, root, ["report", root, "--reps", 20], [str(path), words])


def test_an_undamaged_study_still_reports(runs, run_main):
    root, _ = runs
    assert run_main(["compare", root, "--reps", 20]) == 0
    assert run_main(["report", root, "--reps", 20]) == 0
    assert (root / "report.html").is_file()
