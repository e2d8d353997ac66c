"""The CLI with missions: a tiny training on a BabyAI id whose mission varies, then evaluate and record."""
from __future__ import annotations

import imageio.v3 as iio
import pytest
import yaml

INSTRUCTION_KWARGS = {"features_dim": 16, "instruction_dim": 16, "word_dim": 8}
BABYAI_ID = "BabyAI-GoToLocalS6N2-v0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config, run_main):
    """Two tiny lstm runs: BabyAI GoToLocal (mission read: policy auto -> MultiInputPolicy), and the
    pickup task with instructions=false (mission-blind: CnnPolicy)."""
    root = tmp_path_factory.mktemp("instructions")
    cfg = tiny_config(root, policy_kwargs=INSTRUCTION_KWARGS)
    runs = {}
    for name, extra in (("reads", ["--env", BABYAI_ID]),
                        ("blind", ["--env", "PickupDistractors-v0", "--set", "instructions=false"])):
        assert run_main(["train", "--config", cfg, "--core", "lstm", "--logdir", root / name, "--no-progress",
                         *extra]) == 0
        (runs[name],) = (root / name).glob("*/lstm/seed0")
    return runs


def test_training_picks_the_policy_from_the_observation(trained):
    reads = yaml.safe_load((trained["reads"] / "config.yaml").read_text())
    blind = yaml.safe_load((trained["blind"] / "config.yaml").read_text())
    assert reads["policy"] == "MultiInputPolicy" and reads["env"] == BABYAI_ID
    assert blind["policy"] == "CnnPolicy" and blind["instructions"] is False
    assert (trained["reads"] / "model.zip").is_file() and (trained["blind"] / "model.zip").is_file()


@pytest.mark.parametrize("name", ["reads", "blind"])
def test_evaluate_plays_the_observation_the_model_was_trained_on(trained, name, tmp_path, capsys, run_main):
    code = run_main(["evaluate", "--model", trained[name], "--episodes", 2, "--shifts", "distractors=1",
                     "--out", tmp_path / "ev", "--n-envs", 2])
    assert code == 0 and "distractors" in capsys.readouterr().out
    assert (tmp_path / "ev" / "results.csv").is_file()


def test_record_writes_the_mission_above_the_frames(trained, tmp_path, capsys, run_main):
    heights = {}
    for name in ("reads", "blind"):
        out = tmp_path / f"{name}.gif"
        assert run_main(["record", "--model", trained[name], "--out", out, "--max-steps", 3]) == 0
        heights[name] = iio.imread(out, index=None).shape[1]
        printed = capsys.readouterr().out
        assert ("mission 'go to " in printed) == (name == "reads")
    # GoToLocalS6N2 and the pickup task render 6x6 rooms at the same tile size: the band makes the difference
    assert heights["reads"] > heights["blind"]


@pytest.mark.parametrize("args, words", [
    (["--env", "PickupDistractors-v0", "--set", "policy=CnnPolicy"], ["CnnPolicy", "MultiInputPolicy", "mission"]),
    (["--env", "MiniGrid-DoorKey-5x5-v0", "--set", "policy=MultiInputPolicy"], ["MultiInputPolicy", "instructions"]),
    (["--env", "PickupDistractors-v0", "--set", "instructions=maybe"], ["maybe", "auto, true, false"]),
    (["--env", "MiniGrid-MultiRoom-N2-S4-v0", "--set", "instructions=true"], ["unknown word 'traverse'"]),
    (["--env", "PickupDistractors-v0", "--set", "policy_kwargs.conditioning=add"], ["conditioning", "add", "film or concat"]),
])
def test_bad_mission_settings_are_one_line(args, words, tmp_path, capsys, run_main, tiny_config):
    code = run_main(["train", "--config", tiny_config(tmp_path), "--core", "lstm", "--logdir", tmp_path / "runs",
                     "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    assert not (tmp_path / "runs").exists()


def test_policy_kwargs_take_several_keys():
    from agents.experiments.config import apply_overrides, load_preset

    cfg = apply_overrides(load_preset("minigrid"), ["policy_kwargs.conditioning=concat",
                                                    "policy_kwargs.instruction_encoder=bow"])
    assert cfg["policy_kwargs"] == {"conditioning": "concat", "instruction_encoder": "bow"}


def test_run_configs_from_before_the_instructions_key_keep_the_image_alone():
    from agents.experiments.config import load_preset
    from agents.experiments.validation import instructions_option, resolve_policy

    cfg = {**load_preset("minigrid"), "env": BABYAI_ID, "policy": "CnnPolicy"}
    assert instructions_option(cfg) == "auto" and resolve_policy({**cfg, "policy": "auto"}) == "MultiInputPolicy"
    del cfg["instructions"]  # an older run's config.yaml
    assert instructions_option(cfg) is False and resolve_policy(cfg) == "CnnPolicy"
