"""Config system: presets, YAML files, type-checked --set overrides, one-line errors."""
import pytest
import yaml

from agents.experiments.config import apply_overrides, list_presets, load_config, load_preset
from rims_rl.errors import UserError


def test_presets_exist_and_share_one_schema():
    assert {"atari", "minigrid", "demo"} <= set(list_presets())

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    schemas = {name: keys(load_config(name)) for name in list_presets()}
    assert len({frozenset(s) for s in schemas.values()}) == 1, schemas


def test_atari_preset_is_the_papers_setting():
    cfg = load_preset("atari")
    rims = cfg["cores"]["rims"]
    assert (rims["num_units"], rims["k"], rims["unit_size"], rims["cell"]) == (6, 4, 85, "gru")
    assert rims["input_dropout"] == rims["comm_dropout"] == 0.0
    ppo = cfg["ppo"]
    # the authors' command: Kostrikov's --value-loss-coef 0.5 x the 0.5 inside his value loss = vf_coef 0.25
    assert ppo == {"learning_rate": 2.5e-4, "lr_schedule": "linear", "n_steps": 128, "n_minibatches": 4,
                   "bptt_length": None, "n_epochs": 4, "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.1,
                   "clip_schedule": "constant", "clip_range_vf": 0.1, "ent_coef": 0.01, "vf_coef": 0.25,
                   "max_grad_norm": 0.5}
    assert cfg["n_envs"] == 8 and cfg["timesteps"] == 40_000_000 and cfg["env"] == "BreakoutNoFrameskip-v4"


def test_demo_preset_inherits_minigrid_and_changes_the_budget():
    demo, mini = load_config("demo"), load_config("minigrid")
    assert demo["timesteps"] < mini["timesteps"]
    assert demo["ppo"] == mini["ppo"]


def test_overrides_are_nested_and_typed():
    cfg = apply_overrides(load_config("minigrid"), [
        "ppo.learning_rate=1e-3", "cores.rims.k=3", "timesteps=512", "shifts=distractors=1",
        "cores.rims.communication=false", "ppo.clip_range=1"])
    assert cfg["ppo"]["learning_rate"] == 1e-3 and isinstance(cfg["ppo"]["learning_rate"], float)
    assert cfg["cores"]["rims"]["k"] == 3
    assert cfg["timesteps"] == 512
    assert cfg["shifts"] == "distractors=1"
    assert cfg["cores"]["rims"]["communication"] is False
    assert cfg["ppo"]["clip_range"] == 1.0 and isinstance(cfg["ppo"]["clip_range"], float)


def test_overrides_do_not_change_the_input():
    base = load_config("minigrid")
    apply_overrides(base, ["timesteps=5"])
    assert base["timesteps"] == load_config("minigrid")["timesteps"]


@pytest.mark.parametrize("override, words", [
    ("ppo.lerning_rate=1", ["ppo.lerning_rate", "learning_rate", "n_steps"]),
    ("nosuchkey=1", ["nosuchkey", "timesteps", "ppo"]),
    ("cores.rims.k=abc", ["cores.rims.k", "integer", "abc"]),
    ("timesteps=1.5", ["timesteps", "integer"]),
    ("cores.rims.communication=1", ["communication", "true or false"]),
    ("ppo=3", ["ppo", "section", "learning_rate"]),
    ("ppo.learning_rate=fast", ["learning_rate", "number", "fast"]),
    ("novalue", ["key=value", "novalue"]),
])
def test_bad_overrides_raise_one_line(override, words):
    with pytest.raises(UserError) as info:
        apply_overrides(load_config("minigrid"), [override])
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(UserError, match="unknown preset 'nope'.*atari, demo, minigrid"):
        load_config("nope")


def test_yaml_file_overrides_its_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "atari", "timesteps": 1000, "cores": {"rims": {"k": 5}}}))
    cfg = load_config(str(path))
    assert cfg["env"] == load_preset("atari")["env"]
    assert cfg["timesteps"] == 1000 and cfg["cores"]["rims"]["k"] == 5


def test_yaml_file_errors(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("ppo:\n  nope: 1\n")
    with pytest.raises(UserError, match="ppo.nope"):
        load_config(str(bad_key))
    broken = tmp_path / "broken.yaml"
    broken.write_text("ppo: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(broken))
    with pytest.raises(UserError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("preset", ["atari", "minigrid", "demo"])
def test_every_preset_builds_a_model(preset, tmp_path):
    """Every key of every preset is accepted by the env factory, the core and RecurrentPPO."""
    from envs import make_vec_env

    from agents.experiments.train import build_model
    from agents.experiments.validation import resolve_config

    cfg = resolve_config(preset, ["n_envs=4"])
    env = make_vec_env(cfg["env"], n_envs=cfg["n_envs"], seed=0)
    try:
        for core in ("rims", "lstm"):
            cfg["core"] = core
            model = build_model(cfg, env, tmp_path)
            assert model.n_steps == cfg["ppo"]["n_steps"] and model.n_epochs == cfg["ppo"]["n_epochs"]
            assert model.lr_schedule(1.0) == pytest.approx(cfg["ppo"]["learning_rate"])
            if cfg["ppo"]["lr_schedule"] == "linear":
                assert model.lr_schedule(0.5) == pytest.approx(cfg["ppo"]["learning_rate"] / 2)
    finally:
        env.close()
