"""RecurrentPPO training loop: learn() per core, TensorBoard rims/* logging, guards and SB3 surface."""
import glob

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import CORES, RecurrentPPO

TINY_RIMS = dict(num_units=4, k=2, unit_size=8, input_key_size=8, comm_key_size=8, comm_value_size=8, num_comm_heads=2)
CORE_KWARGS = {"rims": TINY_RIMS, "lstm": {"hidden_size": 16}, "gru": {"hidden_size": 16}, "none": None}


def cartpole(n_envs=2):
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)


def tiny_model(core, **kwargs):
    kwargs.setdefault("n_steps", 16)
    kwargs.setdefault("n_minibatches", 2)
    return RecurrentPPO(
        "MlpPolicy", cartpole(), core=core, core_kwargs=CORE_KWARGS[core], seed=0,
        policy_kwargs={"net_arch": (16,)}, **kwargs,
    )


def scalars_and_images(log_dir):
    (event_file,) = glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True)
    events = EventAccumulator(event_file)
    events.Reload()
    return events.Tags()["scalars"], events.Tags()["images"]


@pytest.mark.parametrize("core", CORES)
def test_tiny_learn_runs_and_logs(core, tmp_path):
    model = tiny_model(core, tensorboard_log=str(tmp_path), raster_interval=2)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(320)  # 10 rollouts of 2 envs x 16 steps
    assert model.num_timesteps == 320
    changed = [not torch.equal(a, b) for a, b in zip(before, model.policy.parameters())]
    assert all(changed)
    scalars, images = scalars_and_images(tmp_path)
    assert {"rollout/ep_rew_mean", "train/value_loss", "train/approx_kl", "time/fps"} <= set(scalars)
    rims_scalars = {f"rollout_rims/active_frac_{i}" for i in range(4)} | {"rollout_rims/switch_rate"}
    if core == "rims":
        assert rims_scalars <= set(scalars)
        assert images == ["rollout_rims/activation_raster"]
        assert model.policy.last_core_info.mask.dtype == torch.bool
    else:
        assert not rims_scalars & set(scalars) and images == []
        assert model.policy.last_core_info is None


def test_activation_statistics_are_consistent():
    model = tiny_model("rims", n_steps=32)
    _, callback = model._setup_learn(1000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, 32)
    stats = model._activation_recorder.statistics()
    fractions = [stats[f"active_frac_{i}"] for i in range(4)]
    assert sum(fractions) == pytest.approx(2.0)  # k=2 of K=4 RIMs active at every step
    assert 0.0 <= stats["switch_rate"] <= 1.0
    raster = model._activation_recorder.raster()
    assert raster.dtype == np.uint8 and raster.shape[1:] == (256, 3)  # 32 steps widened to fit the legend
    assert raster.shape[0] > 4 * 8  # K=4 rows of 8 px and the legend band


def test_non_finite_loss_raises_before_the_optimizer_step():
    model = tiny_model("lstm")
    _, callback = model._setup_learn(1000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    model.rollout_buffer.advantages[3, 1] = np.nan
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(FloatingPointError, match="non-finite"):
        model.train()
    assert all(torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))


def test_bad_core_name_is_one_line_listing_valid_cores():
    with pytest.raises(ValueError) as err:
        RecurrentPPO("MlpPolicy", cartpole(), core="rim")
    message = str(err.value)
    assert "\n" not in message and "'rim'" in message and "rims, lstm, gru, none" in message


def test_minibatch_options_are_validated():
    with pytest.raises(ValueError, match="batch_size=10"):
        tiny_model("none", batch_size=10)  # does not divide 2 x 16
    with pytest.raises(ValueError, match="n_minibatches=64"):
        tiny_model("none", n_minibatches=64)
    model = tiny_model("lstm", batch_size=8)  # 4 minibatches: chunks of 8 steps
    assert model._minibatch_count() == 4
    model.learn(64)
    with pytest.raises(ValueError, match="bptt_length=0"):
        tiny_model("none", bptt_length=0)
    with pytest.raises(ValueError, match="bptt_length='abc'"):
        tiny_model("none", bptt_length="abc")


def test_bptt_length_caps_the_update_sequences():
    from agents.sequences import chunks_per_env

    assert chunks_per_env(128, 8, 4) == 1  # whole rollouts
    assert chunks_per_env(128, 8, 4, max_length=32) == 4
    assert chunks_per_env(128, 8, 4, max_length=50) == 4  # the largest divisor of 128 not above 50
    assert chunks_per_env(128, 2, 4, max_length=128) == 2  # more minibatches than envs still split
    model = tiny_model("rims", n_steps=16, bptt_length=4)
    model.learn(64)  # trains with 8 chunks of 4 steps per rollout
    assert model.bptt_length == 4


@pytest.mark.filterwarnings("ignore::tqdm.TqdmExperimentalWarning")
def test_learning_rate_schedule_and_callbacks():
    calls = {"steps": 0, "rollouts": 0}

    class Counter(BaseCallback):
        def _on_step(self):
            calls["steps"] += 1
            return True

        def _on_rollout_end(self):
            calls["rollouts"] += 1

    model = tiny_model("gru", learning_rate=lambda progress: 1e-3 * progress)
    model.learn(128, callback=Counter(), progress_bar=True)
    assert calls == {"steps": 64, "rollouts": 4}
    lr = model.policy.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * model._current_progress_remaining)
    assert lr < 1e-3

    class StopEarly(BaseCallback):
        def _on_step(self):
            return self.num_timesteps < 20

    model.learn(1000, callback=StopEarly())
    assert model.num_timesteps == 20
