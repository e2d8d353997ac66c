"""The recurrent actor-critic: the core drives the actions, gradients reach it, predict/save/load."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from minigrid.wrappers import ImgObsWrapper
from stable_baselines3.common.env_util import make_vec_env

from agents import RecurrentPPO, RIMsFeaturesExtractor

TINY_RIMS = dict(num_units=4, k=2, unit_size=8, input_key_size=8, comm_key_size=8, comm_value_size=8, num_comm_heads=2)
CORE_KWARGS = {"rims": TINY_RIMS, "lstm": {"hidden_size": 16}, "gru": {"hidden_size": 16}, "none": None}
RECURRENT = ["rims", "lstm", "gru"]


def tiny_model(core, n_envs=2, n_steps=16, **kwargs):
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    kwargs.setdefault("n_minibatches", 2)
    return RecurrentPPO(
        "MlpPolicy", env, core=core, core_kwargs=CORE_KWARGS[core], n_steps=n_steps, seed=0,
        policy_kwargs={"net_arch": (16,)}, **kwargs,
    )


def collect(model):
    _, callback = model._setup_learn(10_000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)


@pytest.mark.parametrize("core", RECURRENT)
def test_ppo_loss_gradient_reaches_every_core_parameter(core):
    model = tiny_model(core)
    collect(model)
    batch = next(model.rollout_buffer.sequence_minibatches(1))
    loss, _ = model._minibatch_loss(batch, clip_range=0.2, clip_range_vf=None)
    model.policy.optimizer.zero_grad()
    loss.backward()
    core_module = model.policy.features_extractor.core
    no_grad = [n for n, p in core_module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("core", RECURRENT)
def test_core_state_changes_the_action_distribution(core):
    torch.manual_seed(0)
    model = tiny_model(core)
    policy = model.policy
    with torch.no_grad():
        policy.action_net.weight.normal_(0.0, 1.0)  # undo the 0.01 init so differences are visible
    obs = torch.as_tensor(np.tile(model.env.observation_space.sample(), (3, 1)))
    state_a = policy.initial_state(3)
    state_b = tuple(torch.randn_like(s) for s in state_a)
    with torch.no_grad():
        probs_a = policy.get_distribution(obs, state_a, torch.zeros(3))[0].distribution.probs
        probs_b = policy.get_distribution(obs, state_b, torch.zeros(3))[0].distribution.probs
        probs_reset = policy.get_distribution(obs, state_b, torch.ones(3))[0].distribution.probs
    assert (probs_a - probs_b).abs().max() > 1e-3  # the core's state drives the policy
    torch.testing.assert_close(probs_reset, probs_a)  # an episode start resets to the initial state


@pytest.mark.parametrize("core", ["rims", "lstm"])
def test_predict_with_state_matches_the_sequence_pass(core):
    torch.manual_seed(0)
    model = tiny_model(core)
    with torch.no_grad():
        model.policy.action_net.weight.normal_(0.0, 1.0)
    T, B = 6, 3
    obs = np.random.default_rng(0).normal(size=(T, B, 4)).astype(np.float32)
    starts = np.zeros((T, B), np.float32)
    starts[0] = 1.0
    starts[4, 1] = 1.0
    state = None
    step_actions = []
    for t in range(T):
        actions, state = model.predict(obs[t], state=state, episode_start=starts[t], deterministic=True)
        step_actions.append(actions)
        assert all(isinstance(s, np.ndarray) and s.shape[0] == B for s in state)
    policy = model.policy
    with torch.no_grad():
        dist, _ = policy.get_distribution(
            torch.as_tensor(obs.reshape(T * B, 4)), policy.initial_state(B), torch.as_tensor(starts)
        )
    expected = dist.get_actions(deterministic=True).numpy().reshape(T, B)
    np.testing.assert_array_equal(np.stack(step_actions), expected)
    single, _ = model.predict(obs[0, 0], deterministic=True)  # one unbatched observation
    assert np.shape(single) == ()


@pytest.mark.parametrize("core", ["rims", "lstm", "none"])
def test_save_load_round_trip_gives_identical_predictions(core, tmp_path):
    model = tiny_model(core)
    model.learn(64)
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = RecurrentPPO.load(path, device="cpu")
    assert loaded.core == core
    obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    state, loaded_state = None, None
    for _ in range(3):
        a, state = model.predict(obs, state=state, deterministic=True)
        b, loaded_state = loaded.predict(obs, state=loaded_state, deterministic=True)
        np.testing.assert_array_equal(a, b)
        for s, t in zip(state, loaded_state):
            np.testing.assert_array_equal(s, t)
    original_opt = model.policy.optimizer.state_dict()["state"]
    loaded_opt = loaded.policy.optimizer.state_dict()["state"]
    assert original_opt.keys() == loaded_opt.keys() and len(original_opt) > 0
    for key in original_opt:
        torch.testing.assert_close(original_opt[key]["exp_avg"], loaded_opt[key]["exp_avg"])


@pytest.mark.parametrize("core", ["rims", "lstm", "gru", "none"])
@pytest.mark.parametrize("bptt_length", [None, 8])
def test_update_reruns_the_rollout_exactly(core, bptt_length):
    # 4 minibatches from 2 envs: sequences are split into chunks that start from stored states;
    # bptt_length=8 cuts them further into 8 chunks of 8 steps (2 per minibatch).
    model = tiny_model(core, n_steps=32, n_minibatches=4, bptt_length=bptt_length)
    collect(model)
    collect(model)
    assert model.rollout_buffer.episode_starts[1:].sum() > 0  # resets inside the sequences
    expected_length = 16 if bptt_length is None else bptt_length
    for batch in model.rollout_buffer.sequence_minibatches(4, bptt_length):
        assert batch.episode_starts.shape == (expected_length, 64 // expected_length // 4)
        with torch.no_grad():
            values, log_prob, _ = model.policy.evaluate_actions(
                batch.observations, batch.actions.long().flatten(), batch.initial_state, batch.episode_starts
            )
        torch.testing.assert_close(log_prob, batch.old_log_prob, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values.flatten(), batch.old_values, atol=1e-5, rtol=1e-5)


class ChannelLastGrid(gym.ObservationWrapper):
    """A 7x7x3 grid whose space SB3 does not recognise as an image (high=10): arrives channel-last."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = spaces.Box(0, 10, (7, 7, 3), np.uint8)

    def observation(self, observation):
        return observation


@pytest.mark.parametrize("channel_last", [False, True])
@pytest.mark.parametrize("core,input_rows", [("rims", True), ("rims", False), ("lstm", False)])
def test_cnn_path_on_minigrid_grids(core, input_rows, channel_last):
    wrappers = (lambda e: ChannelLastGrid(ImgObsWrapper(e))) if channel_last else ImgObsWrapper
    env = make_vec_env("MiniGrid-Empty-5x5-v0", n_envs=2, seed=0, wrapper_class=wrappers)
    model = RecurrentPPO(
        "CnnPolicy", env, core=core, core_kwargs=CORE_KWARGS[core], n_steps=8, n_minibatches=2,
        policy_kwargs={"input_rows": input_rows, "features_dim": 32}, seed=0,
    )
    model.learn(32)
    extractor = model.policy.features_extractor
    assert extractor.base.channels_last == channel_last
    assert extractor.base.rows == input_rows
    if input_rows:
        assert model.policy.last_core_info.input_attention.shape[-1] == 16 + 1  # 4x4 positions + null
    actions, state = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (2,)


def test_rims_features_extractor_for_user_policies():
    space = spaces.Box(-1.0, 1.0, (5,), np.float32)
    extractor = RIMsFeaturesExtractor(space, core_kwargs=TINY_RIMS, net_arch=(8,))
    T, B = 4, 3
    state = extractor.initial_state(B)
    features, state = extractor(torch.randn(T * B, 5), state, torch.zeros(T, B))
    assert features.shape == (T * B, extractor.features_dim) == (T * B, 4 * 8)
    assert extractor.last_core_info.mask.shape == (T, B, 4)
    assert state[0].shape == (B, 4, 8)


def test_bad_policy_and_rows_input_are_rejected():
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    with pytest.raises(ValueError, match="'LstmPolicy'.*MlpPolicy, CnnPolicy"):
        RecurrentPPO("LstmPolicy", env, core="lstm")
    with pytest.raises(ValueError, match="CnnPolicy needs image observations"):
        RecurrentPPO("CnnPolicy", env, core="lstm")
    with pytest.raises(ValueError, match="input_rows=True needs core 'rims'"):
        RecurrentPPO("MlpPolicy", env, core="lstm", policy_kwargs={"input_rows": True})
