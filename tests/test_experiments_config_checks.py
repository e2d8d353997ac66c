"""Every untrainable value, path of the wrong kind and damaged config is one line, exit 2, before anything
is created; the resume rules."""
from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from agents import RecurrentPPO
from agents.experiments.runs import CHECKPOINT, read_num_timesteps


UNTRAINABLE = [
    (["--set", "ppo.n_epochs=0"], ["ppo.n_epochs", "0"]),
    (["--set", "ppo.clip_range=-0.1"], ["ppo.clip_range", "-0.1"]),
    (["--set", "ppo.gamma=0"], ["ppo.gamma", "(0, 1]"]),
    (["--set", "ppo.gamma=1.5"], ["ppo.gamma", "1.5"]),
    (["--set", "ppo.learning_rate=.nan"], ["ppo.learning_rate", "finite"]),
    (["--eval-freq", "-1"], ["eval.freq", "-1"]),
    (["--eval-freq", "16", "--eval-episodes", "0"], ["eval.episodes", "0"]),
    (["--timesteps", str(2**63)], ["timesteps", "2**62"]),
    (["--shifts", "distractors=1,distractors=2"], ["distractors", "twice"]),
    (["--seed", "-1"], ["seed", "-1"]),
    (["--set", "policy_kwargs.bogus=1"], ["policy_kwargs.bogus", "net_arch", "features_dim"]),
    (["--set", "policy_kwargs.features_dim=-3"], ["policy_kwargs.features_dim", "-3"]),
    (["--set", "policy_kwargs.net_arch=[8, 0]"], ["policy_kwargs.net_arch"]),
    (["--set", "policy_kwargs.optimizer_class=Evil"], ["optimizer_class", "Adam"]),
    (["--set", "policy_kwargs.optimizer_kwargs={betas: 3}"], ["optimizer_kwargs"]),
    (["--set", "policy_kwargs.input_rows=true", "--core", "lstm"], ["input_rows", "rims"]),
    (["--set", "ppo.n_minibatches=1000"], ["n_minibatches=1000"]),
    (["--set", "policy=MlpPolicy", "--set", "policy_kwargs.input_rows=true"], ["input_rows", "MlpPolicy"]),
    (["--env", "PickupDistractors-v0", "--set", "policy_kwargs.instruction_row=true"], ["instruction_row", "input_rows"]),
]


@pytest.mark.parametrize("args, words", UNTRAINABLE, ids=[" ".join(a) for a, _ in UNTRAINABLE])
def test_values_that_cannot_train_are_refused_before_anything_is_created(args, words, tmp_path, capsys, run_main,
                                                                         tiny_config, one_line_error):
    code = run_main(["train", "--config", tiny_config(tmp_path), "--logdir", tmp_path / "runs", *args])
    one_line_error(code, capsys.readouterr().err, words)
    assert not (tmp_path / "runs").exists()


def test_policy_kwargs_take_every_policy_argument(tmp_path, tiny_config, run_main):
    """net_arch, optimizer_class and optimizer_kwargs reach the policy (and survive save/load)."""
    cfg = tiny_config(tmp_path)
    assert run_main(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--core", "lstm", "--timesteps", 32,
                     "--no-progress", "--set", "policy=MlpPolicy", "--set", "policy_kwargs.net_arch=[8, 6]",
                     "--set", "policy_kwargs.optimizer_class=AdamW",
                     "--set", "policy_kwargs.optimizer_kwargs={weight_decay: 0.5}"]) == 0
    (run,) = (tmp_path / "runs").glob("*/lstm/seed0")
    model = RecurrentPPO.load(run / "model.zip")
    linears = [m for m in model.policy.features_extractor.base.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [8, 6]
    assert isinstance(model.policy.optimizer, torch.optim.AdamW)
    assert model.policy.optimizer.param_groups[0]["weight_decay"] == 0.5


def test_a_config_whose_base_refers_to_itself(tmp_path, refused):
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {tmp_path / 'loop'}\ntimesteps: 64\n")
    refused(["train", "--config", loop, "--logdir", tmp_path / "runs"], ["base", "not a preset", "minigrid"])
    assert not (tmp_path / "runs").exists()


def test_paths_of_the_wrong_kind(trained_run, tmp_path, tiny_config, refused):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cfg = tiny_config(tmp_path)
    refused(["train", "--config", cfg, "--logdir", a_file], [str(a_file), "not a directory"])
    refused(["train", "--config", cfg, "--logdir", a_file / "below"], ["not a directory"])
    refused(["evaluate", "--model", trained_run, "--out", a_file], ["--out", "is a file"])
    refused(["compare", trained_run, "--out", a_file], ["--out", "is a file"])
    gif_dir = tmp_path / "x.gif"
    gif_dir.mkdir()
    refused(["record", "--model", trained_run, "--out", gif_dir], ["is a directory"])
    (tmp_path / "out" / "results.csv").mkdir(parents=True)
    refused(["evaluate", "--model", trained_run, "--out", tmp_path / "out"], ["results.csv", "is a directory"])
    long = tmp_path / ("n" * 300)
    refused(["train", "--config", cfg, "--logdir", long], ["name too long"])
    refused(["evaluate", "--model", trained_run, "--out", long], ["name too long"])
    assert a_file.read_text() == "keep me" and not list(tmp_path.glob("n*"))


@pytest.mark.parametrize("args, words", [
    (["record", "--seed", "-1"], ["--seed", "-1"]),
    (["evaluate", "--seed", "-1"], ["--seed", "-1"]),
    (["evaluate", "--n-envs", "0"], ["--n-envs", "0"]),
])
def test_bad_seeds_of_record_and_evaluate(args, words, trained_run, snapshot, refused):
    before = snapshot(trained_run)
    refused([args[0], "--model", trained_run, *args[1:]], words)
    assert snapshot(trained_run) == before


def test_compare_with_absurd_reps_and_out_of_memory(trained_run, monkeypatch, refused):
    refused(["compare", trained_run, "--reps", 1_000_000_000], ["--reps", "1000000000"])
    import agents.experiments.compare as compare

    def exhaust(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(compare, "compare_runs", exhaust)
    refused(["compare", trained_run], ["out of memory"])

    def recurse(*args, **kwargs):
        return recurse()

    monkeypatch.setattr(compare, "compare_runs", recurse)
    refused(["compare", trained_run], ["nested too deeply"])


def test_empty_or_cut_config_yaml_is_one_line(trained_run, tmp_path, snapshot, refused):
    run = tmp_path / "lstm" / "seed0"
    shutil.copytree(trained_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    damaged = [yaml.safe_dump({**cfg, "eval": {}}).encode(), yaml.safe_dump({**cfg, "ppo": 3}).encode()]
    # empty, cut off, not text, a section emptied, a section that is not a mapping
    for content in (b"", b"env: RedBallDistractors-v0\n", b"\x00\xff garbage", *damaged):
        (run / "config.yaml").write_bytes(content)
        before = snapshot(run)
        refused(["evaluate", "--model", run], ["config"])
        refused(["record", "--model", run], ["config"])
        refused(["train", "--resume", run], ["config"])
        refused(["compare", run], ["config"])
        assert snapshot(run) == before


# ------------------------------------------------------------------ resume rules

def test_resume_rules(trained_run, tmp_path, run_main, snapshot, refused):
    run = tmp_path / "lstm" / "seed0"
    shutil.copytree(trained_run, run)
    config = (run / "config.yaml").read_bytes()
    before = snapshot(run)
    # a lower budget than the run has done (32 steps)
    refused(["train", "--resume", run, "--timesteps", 16], ["16", "32 steps", "at least 32"])
    refused(["train", "--resume", run, "--config", "minigrid"], ["--config"])
    assert snapshot(run) == before
    # the same budget: nothing to train, config.yaml untouched (not even rewritten)
    mtime = (run / "config.yaml").stat().st_mtime_ns
    assert run_main(["train", "--resume", run, "--no-progress"]) == 0
    assert (run / "config.yaml").read_bytes() == config and (run / "config.yaml").stat().st_mtime_ns == mtime
    # a stale temp file of a killed checkpoint write is removed; a higher budget is written down
    stale = run / "checkpoints" / ".last.zip.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert run_main(["train", "--resume", run, "--timesteps", 64, "--no-progress"]) == 0
    assert not stale.exists() and read_num_timesteps(run / CHECKPOINT) == 64
    assert b"timesteps: 64" in (run / "config.yaml").read_bytes()
    assert not list(run.rglob("*.tmp"))
