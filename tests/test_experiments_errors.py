"""Bad input: one line on stderr naming the problem, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import shutil

import pytest



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
def test_bad_train_input(args, words, tmp_path, refused):
    refused([*args, "--logdir", tmp_path / "runs"] if args[0] != "presets" else args, words)
    assert not (tmp_path / "runs").exists()  # validated before anything is created


@pytest.mark.parametrize("episodes, words", [(0, ["--episodes", "0"]), (2**32, ["--episodes", "reset seed"])])
def test_demo_checks_episodes_before_training(episodes, words, tmp_path, capsys, run_main, tiny_config, one_line_error):
    code = run_main(["demo", "--config", tiny_config(tmp_path), "--cores", "lstm", "--episodes", episodes,
                     "--logdir", tmp_path / "runs", "--no-progress"])
    one_line_error(code, capsys.readouterr().err, words)
    assert not (tmp_path / "runs").exists()  # refused before training, not after it


@pytest.mark.parametrize("command", [
    ["train", "--core", "lstm", "lstm", "--seed", "0", "0"],
    ["demo", "--cores", "lstm", "lstm", "--seeds", "0", "0", "--workers", "1", "--shifts", "none", "--episodes", "2"],
])
def test_a_repeated_core_or_seed_trains_one_run(command, tmp_path, capsys, run_main, tiny_config):
    code = run_main([*command, "--config", tiny_config(tmp_path), "--logdir", tmp_path / "runs", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert [p.parent.name for p in (tmp_path / "runs").rglob("model.zip")] == ["seed0"]


def test_missing_and_corrupt_models(tmp_path, refused):
    refused(["evaluate", "--model", tmp_path / "none.zip"], ["none.zip", "exist"])
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    refused(["evaluate", "--model", bad, "--env", "RedBallDistractors-v0"], ["corrupt"])
    refused(["record", "--model", bad, "--env", "RedBallDistractors-v0"], ["corrupt"])
    refused(["evaluate", "--model", tmp_path], ["run dir"])
    refused(["compare", tmp_path], ["no run dirs"])


def test_existing_run_dir_is_never_overwritten(trained_run, capsys, run_main, one_line_error):
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()}
    cfg = trained_run.parents[2].parent / "tiny.yaml"
    code = run_main(["train", "--config", cfg, "--core", "lstm", "--logdir", trained_run.parents[2],
                     "--timesteps", 32, "--no-progress"])
    one_line_error(code, capsys.readouterr().err, [str(trained_run), "already exists", "--resume"])
    assert {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()} == before


def test_demo_refuses_a_logdir_with_a_different_config(trained_run, capsys, run_main, one_line_error):
    root = trained_run.parents[2]  # the logdir; its lstm run was trained for 32 steps, the tiny config says 64
    code = run_main(["demo", "--config", root.parent / "tiny.yaml", "--logdir", root, "--cores", "lstm"])
    one_line_error(code, capsys.readouterr().err, [str(trained_run), "different config", "timesteps"])


def test_corrupt_checkpoint_on_resume(trained_run, tmp_path, refused):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "last.zip").write_bytes(b"garbage")
    refused(["train", "--resume", run], ["last.zip", "corrupt"])
    assert (run / "checkpoints" / "last.zip").read_bytes() == b"garbage"
    refused(["train", "--resume", tmp_path / "nothing"], ["not a run dir"])
    (run / "checkpoints" / "last.zip").unlink()
    refused(["train", "--resume", run], ["no checkpoint", "last.zip"])
    refused(["train", "--resume", trained_run, "--set", "timesteps=5"], ["--set"])


def test_a_checkpoint_that_cannot_load_closes_the_training_env(trained_run, tmp_path, monkeypatch):
    from agents.experiments import train
    from agents.experiments.runs import read_run_config
    from rims_rl.errors import UserError

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "last.zip").write_bytes(b"garbage")
    made = []
    real = train.make_vec_env

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        made[-1].closed_by_test = False
        close = made[-1].close
        made[-1].close = lambda: (close(), setattr(made[-1], "closed_by_test", True))
        return made[-1]

    monkeypatch.setattr(train, "make_vec_env", spy)
    with pytest.raises(UserError, match="last.zip"):  # what a sweep task hits (it resumes without the CLI's checks)
        train.train_run(read_run_config(run), run, resume=True, progress=False, device="cpu")
    assert made and all(env.closed_by_test for env in made)


def test_record_rejects_unknown_format(trained_run, tmp_path, refused):
    refused(["record", "--model", trained_run, "--out", tmp_path / "x.txt"], [".gif", ".mp4"])
    refused(["evaluate", "--model", trained_run, "--shifts", "sparkles"], ["sparkles", "distractors"])


@pytest.mark.parametrize("args", [["train", "--set", "ppo.lr=1"], ["train", "--core", "bad"],
                                  ["evaluate", "--model", "no/such/model.zip"],
                                  ["train", "--set", "policy_kwargs.bogus=1"],
                                  ["compare", ".", "--reps", "1000000000"]])
def test_errors_from_the_script_are_one_line(args, tmp_path, run_script):
    """The real command line (a subprocess): one stderr line, exit 2, no traceback."""
    result = run_script([*args, *(["--logdir", tmp_path] if args[0] == "train" else [])])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("rims-rl") and "Traceback" not in result.stderr


def test_compare_refuses_runs_of_different_experiments(trained_run, tmp_path, refused):
    import yaml

    base, other, same_seed = (tmp_path / name / "lstm" / "seed0" for name in ("a", "b", "c"))
    for run in (base, other, same_seed):
        shutil.copytree(trained_run, run)
        (run / "eval").mkdir()  # fake evaluation results: only the configs matter here
        (run / "eval" / "results.json").write_text(
            '{"results": [{"shift": "none", "level": 0, "episodes": 1, "mean_return": 0.5, "success_rate": 0.5}]}')
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["seed"], cfg["timesteps"] = 1, 999
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    refused(["compare", base, other], ["differ in timesteps"])
    refused(["compare", base, same_seed], ["same env, label and seed"])


# ---------------------------------------------------------------- the error model: user errors and bugs

@pytest.mark.parametrize("error", [KeyError("summary"), ValueError("operands could not be broadcast together")],
                         ids=["KeyError", "ValueError"])
def test_a_bug_prints_its_traceback_and_asks_for_a_report(error, trained_run, tmp_path, capsys, monkeypatch,
                                                          run_main):
    """An exception that is not a UserError (here raised inside the engine) is a bug: exit 1, the traceback,
    then one line asking for a report; a plain ValueError is no longer taken for the user's mistake."""
    from agents.experiments import compare

    def broken_compare_runs(*args, **kwargs):
        raise error

    monkeypatch.setattr(compare, "compare_runs", broken_compare_runs)
    code = run_main(["compare", trained_run, "--out", tmp_path / "cmp"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" in err and "broken_compare_runs" in err and f"{type(error).__name__}: " in err
    hint = "rims-rl: this is a bug in rims-rl; please report it with the traceback above"
    assert err.strip().splitlines()[-1] == hint


def test_a_user_error_from_the_engine_is_one_line_that_points_to_the_help(trained_run, tmp_path, monkeypatch, refused):
    from agents.experiments import compare
    from rims_rl.errors import UserError

    def refuse(*args, **kwargs):
        raise UserError("runs of two experiments\nsecond line")

    monkeypatch.setattr(compare, "compare_runs", refuse)
    line = refused(["compare", trained_run, "--out", tmp_path / "cmp"])
    assert line == "rims-rl: error: runs of two experiments (see rims-rl compare --help)"


def test_user_error_is_the_one_type_every_package_raises():
    """envs, rims_rl and agents raise the same UserError (a ValueError, as before) for bad input."""
    from agents.checks import check_core_name
    from agents.sequences import chunks_per_env
    from envs import list_shifts, parse_shifts
    from rims_rl import RIMsConfig
    from rims_rl.errors import UserError

    assert issubclass(UserError, ValueError)
    for bad in (lambda: list_shifts("NoSuchEnv-v9"), lambda: parse_shifts("distractors=1,distractors=2"),
                lambda: RIMsConfig(k=9, num_units=4), lambda: check_core_name("transformer"),
                lambda: chunks_per_env(16, 2, 1000)):
        with pytest.raises(UserError):
            bad()
