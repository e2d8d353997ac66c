"""Bad input: one line on stderr naming the problem, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import shutil

import pytest

from agents.experiments.runs import atomic_save
from cli_tiny import run_main, run_script, tiny_config, train_tiny_run


def _check_one_line_error(code, capsys, words):
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("args, words", [
    (["train", "--env", "NoSuchEnv-v9"], ["NoSuchEnv-v9"]),
    (["train", "--core", "transformer"], ["transformer", "rims", "lstm"]),
    (["train", "--config", "nope"], ["nope", "minigrid", "atari"]),
    (["train", "--shifts", "sparkles=1"], ["sparkles", "distractors"]),
    (["train", "--eval-shifts", "distractors=7"], ["7"]),
    (["train", "--set", "ppo.lr=1"], ["ppo.lr", "learning_rate"]),
    (["train", "--set", "timesteps=many"], ["timesteps", "integer", "many"]),
    (["train", "--set", "cores.rims.k=9"], ["k=9"]),
    (["train", "--set", "ppo.bptt_length=abc"], ["bptt_length", "abc"]),
    (["train", "--timesteps", "0"], ["timesteps", "0"]),
    (["demo", "--shifts", "sparkles"], ["sparkles", "distractors"]),
    (["presets", "nope"], ["nope"]),
])
def test_bad_train_input(args, words, tmp_path, capsys):
    _check_one_line_error(run_main([*args, "--logdir", tmp_path / "runs"] if args[0] != "presets" else args),
                          capsys, words)
    assert not (tmp_path / "runs").exists()  # validated before anything is created


@pytest.mark.parametrize("episodes, words", [(0, ["--episodes", "0"]), (2**32, ["--episodes", "reset seed"])])
def test_demo_checks_episodes_before_training(episodes, words, tmp_path, capsys):
    code = run_main(["demo", "--config", tiny_config(tmp_path), "--cores", "lstm", "--episodes", episodes,
                     "--logdir", tmp_path / "runs", "--no-progress"])
    _check_one_line_error(code, capsys, words)
    assert not (tmp_path / "runs").exists()  # refused before training, not after it


@pytest.mark.parametrize("command", [
    ["train", "--core", "lstm", "lstm", "--seed", "0", "0"],
    ["demo", "--cores", "lstm", "lstm", "--seeds", "0", "0", "--workers", "1", "--shifts", "none", "--episodes", "2"],
])
def test_a_repeated_core_or_seed_trains_one_run(command, tmp_path, capsys):
    code = run_main([*command, "--config", tiny_config(tmp_path), "--logdir", tmp_path / "runs", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert [p.parent.name for p in (tmp_path / "runs").rglob("model.zip")] == ["seed0"]


def test_missing_and_corrupt_models(tmp_path, capsys):
    _check_one_line_error(run_main(["evaluate", "--model", tmp_path / "none.zip"]), capsys, ["none.zip", "exist"])
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    _check_one_line_error(run_main(["evaluate", "--model", bad, "--env", "RedBallDistractors-v0"]), capsys,
                          ["corrupt"])
    _check_one_line_error(run_main(["record", "--model", bad, "--env", "RedBallDistractors-v0"]), capsys,
                          ["corrupt"])
    _check_one_line_error(run_main(["evaluate", "--model", tmp_path]), capsys, ["run dir"])
    _check_one_line_error(run_main(["compare", tmp_path]), capsys, ["no run dirs"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("trained"))


def test_existing_run_dir_is_never_overwritten(trained_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()}
    cfg = trained_run.parents[2].parent / "tiny.yaml"
    code = run_main(["train", "--config", cfg, "--core", "lstm", "--logdir", trained_run.parents[2],
                     "--timesteps", 32, "--no-progress"])
    _check_one_line_error(code, capsys, [str(trained_run), "already exists", "--resume"])
    assert {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()} == before


def test_demo_refuses_a_logdir_with_a_different_config(trained_run, capsys):
    root = trained_run.parents[2]  # the logdir; its lstm run was trained for 32 steps, the tiny config says 64
    code = run_main(["demo", "--config", root.parent / "tiny.yaml", "--logdir", root, "--cores", "lstm"])
    _check_one_line_error(code, capsys, [str(trained_run), "different config", "timesteps"])


def test_corrupt_checkpoint_on_resume(trained_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "last.zip").write_bytes(b"garbage")
    _check_one_line_error(run_main(["train", "--resume", run]), capsys, ["last.zip", "corrupt"])
    assert (run / "checkpoints" / "last.zip").read_bytes() == b"garbage"
    _check_one_line_error(run_main(["train", "--resume", tmp_path / "nothing"]), capsys, ["not a run dir"])
    (run / "checkpoints" / "last.zip").unlink()
    _check_one_line_error(run_main(["train", "--resume", run]), capsys, ["no checkpoint", "last.zip"])
    _check_one_line_error(run_main(["train", "--resume", trained_run, "--set", "timesteps=5"]), capsys, ["--set"])


def test_a_checkpoint_that_cannot_load_closes_the_training_env(trained_run, tmp_path, monkeypatch):
    import envs
    from agents.experiments.config import UserError
    from agents.experiments.runs import read_run_config
    from agents.experiments.train import train_run

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "last.zip").write_bytes(b"garbage")
    made = []
    real = envs.make_vec_env

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        made[-1].closed_by_test = False
        close = made[-1].close
        made[-1].close = lambda: (close(), setattr(made[-1], "closed_by_test", True))
        return made[-1]

    monkeypatch.setattr(envs, "make_vec_env", spy)
    with pytest.raises(UserError, match="last.zip"):  # what a sweep task hits (it resumes without the CLI's checks)
        train_run(read_run_config(run), run, resume=True, progress=False, device="cpu")
    assert made and all(env.closed_by_test for env in made)


def test_record_rejects_unknown_format(trained_run, tmp_path, capsys):
    _check_one_line_error(run_main(["record", "--model", trained_run, "--out", tmp_path / "x.txt"]), capsys,
                          [".gif", ".mp4"])
    _check_one_line_error(run_main(["evaluate", "--model", trained_run, "--shifts", "sparkles"]), capsys,
                          ["sparkles", "distractors"])


@pytest.mark.parametrize("args", [["train", "--set", "ppo.lr=1"], ["train", "--core", "bad"],
                                  ["evaluate", "--model", "no/such/model.zip"],
                                  ["train", "--set", "policy_kwargs.bogus=1"],
                                  ["compare", ".", "--reps", "1000000000"]])
def test_errors_from_the_script_are_one_line(args, tmp_path):
    """The real command line (a subprocess): one stderr line, exit 2, no traceback."""
    result = run_script([*args, *(["--logdir", tmp_path] if args[0] == "train" else [])])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("rims-rl") and "Traceback" not in result.stderr


def test_compare_refuses_runs_of_different_experiments(trained_run, tmp_path, capsys):
    import yaml

    base, other, same_seed = (tmp_path / name / "lstm" / "seed0" for name in ("a", "b", "c"))
    for run in (base, other, same_seed):
        shutil.copytree(trained_run, run)
        (run / "eval").mkdir()  # fake evaluation results: only the configs matter here
        (run / "eval" / "results.json").write_text(
            '{"results": [{"shift": "none", "level": 0, "mean_return": 0.5, "success_rate": 0.5}]}')
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["seed"], cfg["timesteps"] = 1, 999
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    _check_one_line_error(run_main(["compare", base, other]), capsys, ["differ in timesteps"])
    _check_one_line_error(run_main(["compare", base, same_seed]), capsys, ["same env, core and seed"])
