"""Budgets: training stops at the first rollout boundary at or past ``timesteps`` (SB3's rule), and a run
interrupted mid-rollout, then resumed, ends at exactly the step count of an uninterrupted run."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from agents.experiments.outcomes import Interrupted
from agents.experiments.runs import CHECKPOINT, FINAL_MODEL, read_num_timesteps
from agents.experiments.train import train_run
from agents.experiments.validation import resolve_config, run_config

ROLLOUT = 32  # the tiny config: n_steps 16 x n_envs 2
BUDGET = 100  # not a multiple of the rollout: SB3's rule ends at 128


class SignalAt(BaseCallback):
    """Send this process a SIGINT (as Ctrl-C does) at the env step where ``num_timesteps`` reaches ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.sent = at, False

    def _on_step(self) -> bool:
        if not self.sent and self.model.num_timesteps >= self.at:
            self.sent = True
            signal.raise_signal(signal.SIGINT)
        return True


@pytest.fixture
def tiny_cfg(tmp_path, tiny_config):
    """The tiny lstm run config with a budget of :data:`BUDGET` steps."""
    return run_config(resolve_config(str(tiny_config(tmp_path)), timesteps=BUDGET), "lstm", 0)


def _first_boundary(budget: int) -> int:
    return -(-budget // ROLLOUT) * ROLLOUT


def test_an_uninterrupted_run_stops_at_the_first_rollout_boundary_at_or_past_its_budget(tmp_path, tiny_cfg):
    outcome = train_run(tiny_cfg, tmp_path / "run", progress=False)
    assert outcome.num_timesteps == read_num_timesteps(tmp_path / "run" / FINAL_MODEL) == _first_boundary(BUDGET)


@pytest.mark.parametrize("stops", [(2,), (40,), (126,), (40, 70)])
def test_an_interrupted_and_resumed_run_ends_where_an_uninterrupted_one_does(stops, tmp_path, tiny_cfg):
    run = tmp_path / "run"
    for at in stops:
        with pytest.raises(Interrupted):
            train_run(tiny_cfg, run, resume=run.exists(), progress=False, callbacks=[SignalAt(at)])
        kept = read_num_timesteps(run / CHECKPOINT)
        # the stopped rollout's data was discarded: the checkpoint counts the whole rollouts only
        assert kept % ROLLOUT == 0 and at - ROLLOUT < kept <= at, (at, kept)
    outcome = train_run(tiny_cfg, run, resume=True, progress=False)
    assert outcome.num_timesteps == read_num_timesteps(run / FINAL_MODEL) == _first_boundary(BUDGET)


def test_a_resume_with_a_larger_budget_ends_at_its_first_boundary(tmp_path, tiny_cfg, run_main, capsys):
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        train_run(tiny_cfg, run, progress=False, callbacks=[SignalAt(50)])
    assert run_main(["train", "--resume", run, "--timesteps", 200, "--no-progress"]) == 0
    assert read_num_timesteps(run / FINAL_MODEL) == _first_boundary(200)
    assert f"resuming {run} from step 32" in capsys.readouterr().out


def test_resuming_a_finished_run_says_what_was_asked_and_writes_nothing(tmp_path, tiny_cfg, run_main, capsys,
                                                                         snapshot, refused):
    run = tmp_path / "run"
    train_run(tiny_cfg, run, progress=False)
    capsys.readouterr()
    done = _first_boundary(BUDGET)
    before = snapshot(run)
    mtime = (run / FINAL_MODEL).stat().st_mtime_ns
    assert run_main(["train", "--resume", run, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"has finished: {done} steps for its budget of {BUDGET}; nothing to train" in out
    assert f"give --timesteps N above {done}" in out and "--timesteps 100" not in out  # none was given
    assert run_main(["train", "--resume", run, "--timesteps", done, "--no-progress"]) == 0
    assert f"has finished: {done} steps for --timesteps {done}; nothing to train" in capsys.readouterr().out
    # model.zip keeps its time: an evaluation of it stays current for the sweep
    assert snapshot(run) == before and (run / FINAL_MODEL).stat().st_mtime_ns == mtime
    refused(["train", "--resume", run, "--timesteps", 50, "--no-progress"],
            ["--timesteps 50 is below the 128 steps", "at least 128"])


def test_an_unfinished_run_with_a_checkpoint_at_its_budget_is_finished_by_a_resume(tmp_path, tiny_cfg, run_main):
    """A stop during the last update leaves a checkpoint at the final boundary and no model.zip."""
    run = tmp_path / "run"
    train_run(tiny_cfg, run, progress=False)
    Path(run / FINAL_MODEL).unlink()
    assert run_main(["train", "--resume", run, "--no-progress"]) == 0
    assert read_num_timesteps(run / FINAL_MODEL) == _first_boundary(BUDGET)
