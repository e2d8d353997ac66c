"""PPO options for the paper's Atari setting: value clipping, the clip-range schedule, the `atari`
preset, and evaluation that resets the core at a lost life as training does."""
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

from agents import RecurrentPPO
from agents.experiments.config import apply_overrides, load_config
from agents.experiments.evaluation.episodes import run_episodes
from agents.experiments.train import build_model
from agents.experiments.validation import resolve_config
from agents.ppo import clipped_value_loss
from envs import episode_starts, make_vec_env
from rims_rl.errors import UserError

TINY_RIMS = ["cores.rims.num_units=3", "cores.rims.k=2", "cores.rims.unit_size=4", "cores.rims.input_key_size=4",
             "cores.rims.comm_key_size=4", "cores.rims.comm_value_size=4", "cores.rims.num_comm_heads=1"]


# ---------------------------------------------------------------- value clipping

def test_clipped_value_loss_matches_a_hand_computation():
    values = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    old, returns = torch.zeros(3), torch.tensor([0.0, 1.0, 3.0])
    # per sample: unclipped (R - v)^2 = 1, 1, 1; clipped value 0.5, 0, 0.5 -> (R - v_clip)^2 = 0.25, 1, 6.25
    loss = clipped_value_loss(values, old, returns, 0.5)
    assert loss.item() == pytest.approx((1 + 1 + 6.25) / 3)  # the larger of the two per sample
    assert clipped_value_loss(values, old, returns, None).item() == pytest.approx(1.0)
    loss.backward()
    # sample 2 moved 2.0 from its old value (clip 0.5) and its clipped error is the larger: no gradient
    torch.testing.assert_close(values.grad, torch.tensor([2 / 3, -2 / 3, 0.0]))


def test_minibatch_loss_clips_the_value_loss():
    env = sb3_make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = RecurrentPPO("MlpPolicy", env, core="lstm", core_kwargs={"hidden_size": 8}, n_steps=16,
                         n_minibatches=1, seed=0, policy_kwargs={"net_arch": (8,)})
    _, callback = model._setup_learn(10_000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    batch = next(model.rollout_buffer.sequence_minibatches(1))
    batch = batch._replace(old_values=batch.old_values + torch.linspace(-3, 3, len(batch.old_values)))
    with torch.no_grad():
        values = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten(),
                                               batch.initial_state, batch.episode_starts)[0].flatten()
    clip = 0.2
    moved = batch.old_values + (values - batch.old_values).clamp(-clip, clip)
    by_hand = torch.max((batch.returns - values) ** 2, (batch.returns - moved) ** 2).mean().item()
    _, clipped = model._minibatch_loss(batch, clip_range=0.2, clip_range_vf=clip)
    _, unclipped = model._minibatch_loss(batch, clip_range=0.2, clip_range_vf=None)
    assert clipped["value_loss"] == pytest.approx(by_hand, rel=1e-5)
    assert unclipped["value_loss"] == pytest.approx(((batch.returns - values) ** 2).mean().item(), rel=1e-5)
    assert clipped["value_loss"] > unclipped["value_loss"]


def test_recurrent_ppo_rejects_a_non_positive_clip_range():
    env = sb3_make_vec_env("CartPole-v1", n_envs=2, seed=0)
    with pytest.raises(ValueError, match=r"^clip_range_vf=0 is invalid; valid: a number > 0, a schedule or None"):
        RecurrentPPO("MlpPolicy", env, core="none", n_steps=16, clip_range_vf=0)
    with pytest.raises(ValueError, match=r"^clip_range=-0.1 is invalid"):
        RecurrentPPO("MlpPolicy", env, core="none", n_steps=16, clip_range=-0.1)


# ---------------------------------------------------------------- clip-range schedule

@pytest.mark.parametrize("kind, expected", [("linear", (0.2, 0.1, 0.0)), ("constant", (0.2, 0.2, 0.2))])
def test_clip_schedule_at_progress_1_half_and_0(kind, expected, tmp_path):
    cfg = resolve_config("minigrid", ["n_envs=2", "ppo.n_steps=8", "ppo.n_minibatches=1", *TINY_RIMS,
                                      f"ppo.clip_schedule={kind}", "ppo.clip_range_vf=0.4",
                                      "ppo.lr_schedule=constant"])
    env = make_vec_env(cfg["env"], n_envs=2, seed=0)
    try:
        model = build_model(cfg, env, tmp_path)
    finally:
        env.close()
    progress = (1.0, 0.5, 0.0)  # SB3's progress remaining: start, half-way, end of the run
    assert [model.clip_range(p) for p in progress] == pytest.approx(expected)
    assert [model.clip_range_vf(p) for p in progress] == pytest.approx([2 * v for v in expected])
    assert [model.lr_schedule(p) for p in progress] == pytest.approx([cfg["ppo"]["learning_rate"]] * 3)


def test_clip_range_vf_null_turns_value_clipping_off(tmp_path):
    cfg = apply_overrides(load_config("atari"), ["ppo.clip_range_vf=null"])
    assert cfg["ppo"]["clip_range_vf"] is None
    assert apply_overrides(load_config("minigrid"), ["ppo.bptt_length=null"])["ppo"]["bptt_length"] is None
    with pytest.raises(UserError, match="timesteps expects an integer, got 'null'"):
        apply_overrides(load_config("atari"), ["timesteps=null"])  # only optional keys take null


@pytest.mark.parametrize("override, words", [
    ("ppo.clip_range_vf=abc", ["ppo.clip_range_vf", "null", "> 0", "'abc'"]),
    ("ppo.clip_range_vf=0", ["ppo.clip_range_vf", "> 0", "got 0"]),
    ("ppo.clip_range_vf=-0.1", ["ppo.clip_range_vf", "-0.1"]),
    ("ppo.clip_range_vf=true", ["ppo.clip_range_vf", "True"]),
    ("ppo.clip_range_vf=.nan", ["ppo.clip_range_vf", "nan"]),
    ("ppo.clip_schedule=cosine", ["ppo.clip_schedule", "linear or constant", "cosine"]),
    ("ppo.clip_range=0", ["ppo.clip_range", "> 0"]),
])
def test_bad_clip_values_are_one_line_exit_2(override, words, tmp_path, capsys, run_main, tiny_config):
    code = run_main(["train", "--config", tiny_config(tmp_path), "--set", override, "--logdir", tmp_path / "runs",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- the atari preset

def test_atari_preset_trains_on_a_noframeskip_game(tmp_path):
    cfg = resolve_config("atari", ["n_envs=2", "ppo.n_steps=8", "ppo.n_minibatches=2", *TINY_RIMS,
                                   "policy_kwargs.features_dim=16"])
    assert cfg["env"].endswith("NoFrameskip-v4") and cfg["ppo"]["clip_range_vf"] == cfg["ppo"]["clip_range"] == 0.1
    env = make_vec_env(cfg["env"], n_envs=cfg["n_envs"], seed=0, training=True)
    try:
        model = build_model(cfg, env, tmp_path)
        assert env.observation_space.shape == (4, 84, 84)
        assert model.clip_range_vf(1.0) == model.clip_range(0.0) == 0.1  # value clipping on, no clip decay
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(32)  # two updates: the linear lr decay makes the one at the end of the run a no-op
    finally:
        env.close()
    assert model.num_timesteps == 32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))


# ---------------------------------------------------------------- life loss at evaluation

def test_episode_starts_adds_lost_lives_to_dones():
    starts = episode_starts(np.array([False, True, False, False]),
                            [{"lives": 3}, {"lives": 5}, {"lives": 2, "life_lost": True}, {}])
    assert starts.tolist() == [False, True, True, False]


def test_evaluation_env_marks_the_life_losses_that_end_training_episodes():
    def life_events(training):
        venv = make_vec_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0, training=training)
        rng = np.random.default_rng(0)
        venv.reset()
        events = []
        try:
            for t in range(300):
                _, _, dones, infos = venv.step(rng.integers(0, venv.action_space.n, 2))
                events += [(t, i, bool(dones[i]), "episode" in info, bool(info.get("life_lost")))
                           for i, info in enumerate(infos) if dones[i] or info.get("life_lost")]
        finally:
            venv.close()
        return events

    train, evaluate = life_events(True), life_events(False)
    lost = [(t, i) for t, i, done, game_over, life_lost in evaluate if life_lost]
    assert lost and all(not done for _, _, done, _, life_lost in evaluate if life_lost)  # the game goes on
    # the same steps end the agent's episode in training (done, no game over)
    assert lost == [(t, i) for t, i, done, game_over, _ in train if done and not game_over]


class RandomAgent:
    """Stands in for a model in run_episodes: random actions, records the episode starts it is given."""

    def __init__(self):
        self.starts, self.rng = [], np.random.default_rng(0)

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        self.starts.append(np.asarray(episode_start, dtype=bool).copy())
        return self.rng.integers(0, 4, len(obs)), state


def test_atari_evaluation_resets_the_core_at_each_lost_life():
    agent = RandomAgent()
    returns = run_episodes(agent, "BreakoutNoFrameskip-v4", None, episodes=1, seed=0, n_envs=1)
    assert len(returns) == 1
    # Breakout has 5 lives: the start of the game and the 4 lost lives before the last one (game over)
    assert sum(int(s[0]) for s in agent.starts) == 5
    assert agent.starts[0][0]
