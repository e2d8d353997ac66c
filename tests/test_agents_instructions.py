"""MultiInputPolicy: the mission reaches the policy; dict observations through rollouts, updates, save/load, predict."""
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import RecurrentPPO
from agents.buffer import SequenceDictRolloutBuffer
from agents.extractors import InstructionExtractor
from envs import PICKUP_ENV_ID, make_vec_env
from envs.missions import decode_mission, encode_mission
from test_agents_ppo import scalars_and_images

TINY_RIMS = dict(num_units=4, k=2, unit_size=8, input_key_size=8, comm_key_size=8, comm_value_size=8, num_comm_heads=2)
CORE_KWARGS = {"rims": TINY_RIMS, "lstm": {"hidden_size": 16}}


def tiny_model(core="lstm", n_envs=2, tensorboard_log=None, **policy_kwargs):
    env = make_vec_env(PICKUP_ENV_ID, n_envs, seed=0)
    return RecurrentPPO("MultiInputPolicy", env, core=core, core_kwargs=CORE_KWARGS[core], n_steps=16,
                        n_minibatches=2, seed=0, tensorboard_log=tensorboard_log, policy_kwargs={"features_dim": 16, "instruction_dim": 16,
                                                                "word_dim": 8, **policy_kwargs})


def two_missions_one_image(model):
    """Observation batch of 2: the same image, missions 'pick up the red ball' / 'pick up the blue key'."""
    image = model.env.reset()["image"][0]
    missions = np.stack([encode_mission("pick up the red ball"), encode_mission("pick up the blue key")])
    return {"image": np.stack([image, image]), "mission": missions}


@pytest.mark.parametrize("encoder", ["gru", "bow"])
@pytest.mark.parametrize("conditioning", ["film", "concat"])
def test_two_missions_on_one_image_give_different_action_distributions(encoder, conditioning):
    torch.manual_seed(0)
    model = tiny_model(instruction_encoder=encoder, conditioning=conditioning)
    policy = model.policy
    obs, _ = policy.obs_to_tensor(two_missions_one_image(model))
    with torch.no_grad():
        policy.action_net.weight.normal_(0.0, 1.0)  # undo the 0.01 init so differences are visible
        probs = policy.get_distribution(obs, policy.initial_state(2), torch.ones(2))[0].distribution.probs
        same = policy.get_distribution({k: v[:1].repeat(2, *[1] * (v.dim() - 1)) for k, v in obs.items()},
                                       policy.initial_state(2), torch.ones(2))[0].distribution.probs
    assert (probs[0] - probs[1]).abs().max() > 1e-3  # the instruction moves the actions
    torch.testing.assert_close(same[0], same[1])  # and nothing else differs


@pytest.mark.parametrize("core, policy_kwargs", [("lstm", {}), ("rims", {}), ("rims", {"input_rows": True}),
                                                  ("rims", {"input_rows": True, "instruction_row": True})])
def test_dict_observations_through_learn_save_load_and_predict(core, policy_kwargs, tmp_path):
    model = tiny_model(core, tensorboard_log=str(tmp_path / "tb"), **policy_kwargs)
    assert isinstance(model.rollout_buffer, SequenceDictRolloutBuffer)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    changed = [name for (name, p), b in zip(model.policy.named_parameters(), before) if not torch.equal(p, b)]
    assert any("instruction" in name for name in changed)  # the update reaches the instruction encoder
    if core == "rims":  # the activation logging sees the masks
        assert model.policy.last_core_info.mask.dtype == torch.bool
        scalars, images = scalars_and_images(tmp_path / "tb")
        assert {"rollout_rims/active_frac_0", "rollout_rims/switch_rate"} <= set(scalars) and images == ["rollout_rims/activation_raster"]
    obs = two_missions_one_image(model)
    actions, state = model.predict(obs, state=None, episode_start=np.ones(2), deterministic=True)
    actions2, state2 = model.predict(obs, state=state, episode_start=np.zeros(2), deterministic=True)
    assert actions.shape == (2,) and all(s.shape[0] == 2 for s in state2)
    model.save(tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip")
    assert isinstance(loaded.observation_space, spaces.Dict)
    assert loaded.policy.instruction_kwargs == model.policy.instruction_kwargs
    la, ls = loaded.predict(obs, state=None, episode_start=np.ones(2), deterministic=True)
    la2, ls2 = loaded.predict(obs, state=ls, episode_start=np.zeros(2), deterministic=True)
    np.testing.assert_array_equal(la, actions), np.testing.assert_array_equal(la2, actions2)
    for a, b in zip(state2, ls2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    single, _ = loaded.predict({k: v[0] for k, v in obs.items()}, deterministic=True)  # one unbatched observation
    assert np.ndim(single) == 0 and single == la[0]


def test_instruction_row_adds_one_rims_input_row():
    rows = tiny_model("rims", input_rows=True).policy.features_extractor.base
    with_row = tiny_model("rims", input_rows=True, instruction_row=True).policy.features_extractor.base
    assert isinstance(rows, InstructionExtractor)
    assert with_row.num_rows == rows.num_rows + 1 == 17  # 4x4 grid CNN map positions + the instruction


def test_sequence_minibatches_hold_each_env_sequence_for_every_observation_key():
    model = tiny_model("lstm")
    _, callback = model._setup_learn(1000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer = model.rollout_buffer
    batch = next(buffer.sequence_minibatches(1))  # one minibatch: both envs' whole rollouts, in random order
    envs = {}
    for key in ("image", "mission"):
        stored = torch.as_tensor(buffer.observations[key])  # [n_steps, n_envs, ...]
        got = batch.observations[key].view(16, 2, *stored.shape[2:])
        envs[key] = [next(e for e in range(2) if torch.equal(got[:, j], stored[:, e])) for j in range(2)]
    assert envs["image"] == envs["mission"] and sorted(envs["image"]) == [0, 1]
    starts = torch.as_tensor(buffer.episode_starts)[:, envs["image"]]
    torch.testing.assert_close(batch.episode_starts, starts)
    assert decode_mission(batch.observations["mission"][0].long().numpy()).startswith("pick up the ")


@pytest.mark.parametrize("policy, env_kwargs, fragment", [
    ("CnnPolicy", {}, "You must use `MultiInputPolicy` when working with dict observation space, not CnnPolicy"),
    ("MultiInputPolicy", {"instructions": False}, "MultiInputPolicy needs dict observations"),
])
def test_policy_that_cannot_read_the_observation_is_one_line(policy, env_kwargs, fragment):
    env = make_vec_env(PICKUP_ENV_ID, 1, seed=0, **env_kwargs)
    with pytest.raises(ValueError) as err:
        RecurrentPPO(policy, env, core="lstm", core_kwargs={"hidden_size": 8}, n_steps=8, n_minibatches=1)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_image_policies_built_directly_refuse_dict_observations():
    from agents.policies import CnnPolicy

    space = make_vec_env(PICKUP_ENV_ID, 1, seed=0).observation_space
    with pytest.raises(ValueError, match=r"^CnnPolicy cannot read dict observations \(image, mission\); valid: Multi"):
        CnnPolicy(space, spaces.Discrete(4), lambda _: 1e-3, core="lstm")


def test_bad_instruction_options_are_one_line():
    for kwargs, fragment in [({"instruction_encoder": "lstm"}, "instruction_encoder 'lstm'; valid: gru, bow"),
                             ({"conditioning": "add"}, "conditioning 'add'; valid: film, concat"),
                             ({"instruction_row": True}, "instruction_row=True needs input_rows=True")]:
        with pytest.raises(ValueError) as err:
            tiny_model("rims", **kwargs)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_one_hot_grid_planes_hold_each_code_once():
    from agents.extractors import SYMBOLIC_CODES, one_hot_codes

    grid = torch.tensor([[[[2, 5]], [[0, 4]], [[1, 0]]]])  # [1, 3, 1, 2]: a wall (2, red 0, state 1), a key (5, yellow 4)
    planes = one_hot_codes(grid)
    assert planes.shape == (1, sum(SYMBOLIC_CODES), 1, 2) and (planes.sum(dim=1) == 3).all()
    assert planes[0, 2, 0, 0] == 1 and planes[0, 11 + 0, 0, 0] == 1 and planes[0, 17 + 1, 0, 0] == 1
    assert planes[0, 5, 0, 1] == 1 and planes[0, 11 + 4, 0, 1] == 1 and planes[0, 17 + 0, 0, 1] == 1


def test_one_hot_is_the_default_for_missions_only_and_survives_save_load(tmp_path):
    model = tiny_model("lstm")
    assert model.policy.one_hot and model.policy.features_extractor.base.image.one_hot
    model.save(tmp_path / "m.zip")
    assert RecurrentPPO.load(tmp_path / "m.zip").policy.features_extractor.base.image.one_hot
    blind = RecurrentPPO("CnnPolicy", make_vec_env(PICKUP_ENV_ID, 1, seed=0, instructions=False), core="lstm",
                         core_kwargs={"hidden_size": 8}, n_steps=8, n_minibatches=1)
    assert not blind.policy.one_hot and not blind.policy.features_extractor.base.one_hot
