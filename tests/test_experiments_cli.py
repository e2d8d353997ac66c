"""The command line's surface: one spelling per flag across subcommands (old spellings hidden aliases),
the budget rule in every ``--timesteps`` help, ``sweep --n-envs``, usage errors pointing to the subcommand."""
from __future__ import annotations

import pytest
import yaml

from train_agent import build_parser

TRAINING = ("train", "sweep", "demo")  # the subcommands that train runs from flags
SHARED = ("--config", "--set", "--core", "--seed", "--timesteps", "--n-envs", "--logdir", "--no-progress")


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", TRAINING)
def test_training_commands_share_one_spelling_of_each_flag(command, capsys):
    text = help_text(command, capsys)
    for flag in SHARED:
        assert f"  {flag} " in text or f"  {flag}\n" in text, (command, flag)
    for old in ("--cores", "--seeds"):
        assert old not in text  # hidden aliases only


@pytest.mark.parametrize("command", TRAINING)
def test_every_timesteps_help_states_where_training_stops(command, capsys):
    text = " ".join(help_text(command, capsys).split())
    assert "training stops at the first rollout boundary (a multiple of ppo.n_steps x n_envs steps) at or past it" \
        in text


@pytest.mark.parametrize("spelling", [["--core", "lstm", "gru", "--seed", "3", "4"],
                                      ["--cores", "lstm", "gru", "--seeds", "3", "4"],
                                      ["--cores", "lstm", "gru", "--seed", "3", "4"]])
def test_demo_takes_core_and_seed_and_the_old_plural_spellings(spelling, monkeypatch, run_main):
    from agents.experiments.commands import demo

    seen = {}
    monkeypatch.setattr(demo, "demo", lambda **kwargs: seen.update(kwargs))
    assert run_main(["demo", *spelling, "--timesteps", "96", "--n-envs", "3"]) == 0
    assert (seen["cores"], seen["seeds"]) == (["lstm", "gru"], [3, 4])
    assert (seen["timesteps"], seen["n_envs"]) == (96, 3)


def test_demo_defaults_to_its_cores_and_seed(monkeypatch, run_main):
    from agents.experiments.commands import demo

    seen = {}
    monkeypatch.setattr(demo, "demo", lambda **kwargs: seen.update(kwargs))
    assert run_main(["demo"]) == 0
    assert (seen["cores"], seen["seeds"], seen["timesteps"], seen["n_envs"]) == (["rims", "lstm"], [0], None, None)


@pytest.mark.parametrize("flag, key", [("--timesteps", "timesteps"), ("--n-envs", "n_envs")])
def test_demo_checks_its_budget_flags_before_anything_is_written(flag, key, tmp_path, capsys, run_main,
                                                                 one_line_error):
    code = run_main(["demo", flag, "0", "--logdir", tmp_path / "runs", "--no-progress"])
    one_line_error(code, capsys.readouterr().err, [key, "0", "see rims-rl demo --help"])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, where", [
    (["train", "--bogus"], "rims-rl train: error: unrecognized arguments: --bogus (see rims-rl train --help)"),
    (["sweep", "a.yaml", "b.yaml"], "rims-rl sweep: error: unrecognized arguments: b.yaml (see rims-rl sweep --help)"),
    (["demo", "--core", "transformer"], "(see rims-rl demo --help)"),
    (["sweep", "--core", "transformer"], "(see rims-rl sweep --help)"),
    (["evaluate", "--episodes", "many"], "(see rims-rl evaluate --help)"),
    (["--bogus"], "rims-rl: error: unrecognized arguments: --bogus (see rims-rl --help)"),
])
def test_usage_errors_point_to_the_subcommands_help(args, where, capsys, run_main, one_line_error):
    line = one_line_error(run_main(args), capsys.readouterr().err)
    assert where in line


def _planned(tmp_path, monkeypatch, run_main, tiny_config, flags, grid=None):
    """The plan of ``rims-rl sweep`` with ``flags`` (and a grid file), without Ray."""
    from agents.experiments.sweep import driver as runner
    from agents.experiments.sweep.grid import plan_sweep

    grids = []
    monkeypatch.setattr(runner, "sweep", lambda g, **kwargs: grids.append(g))
    argv = ["sweep", "--config", tiny_config(tmp_path), *flags, "--logdir", tmp_path / "runs"]
    if grid is not None:
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
        argv.insert(1, tmp_path / "grid.yaml")
    assert run_main(argv) == 0
    return plan_sweep(grids[0], tmp_path / "runs")


def test_sweep_n_envs_sets_every_runs_n_envs(tmp_path, monkeypatch, run_main, tiny_config):
    plan = _planned(tmp_path, monkeypatch, run_main, tiny_config, ["--core", "lstm", "gru", "--n-envs", "3"])
    assert [p.cfg["n_envs"] for p in plan] == [3, 3]
    assert [p.cfg["n_envs"] for p in _planned(tmp_path, monkeypatch, run_main, tiny_config, [])] == [2]  # the config's


def test_sweep_n_envs_overrides_the_grid_files_own(tmp_path, monkeypatch, run_main, tiny_config):
    grid = {"overrides": {"n_envs": 4}, "tasks": [{"env": "RedBallDistractors-v0", "overrides": {"n_envs": 5}}],
            "labels": {"lstm-wide": {"core": "lstm", "set": {"n_envs": 6}}}}
    plan = _planned(tmp_path, monkeypatch, run_main, tiny_config, [], grid)
    assert [p.cfg["n_envs"] for p in plan] == [6]  # without the flag the variant's own value
    plan = _planned(tmp_path, monkeypatch, run_main, tiny_config, ["--n-envs", "3"], grid)
    assert [p.cfg["n_envs"] for p in plan] == [3]


def test_sweep_refuses_a_bad_n_envs_in_one_line(tmp_path, capsys, run_main, tiny_config, one_line_error):
    code = run_main(["sweep", "--config", tiny_config(tmp_path), "--n-envs", "0", "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, ["n_envs", "0", "see rims-rl sweep --help"])
    assert not (tmp_path / "runs").exists()
