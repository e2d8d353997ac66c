"""Checkpoints: SIGKILL then --resume, SIGINT saves and exits 130, NaN keeps the last good checkpoint."""
from __future__ import annotations

import signal
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.experiments.runs import CHECKPOINT, read_num_timesteps


def _wait_for_checkpoint(proc, path, after: int = -1, timeout: float = 90.0) -> int:
    """Wait until ``path`` holds a checkpoint with more than ``after`` steps; return its step count."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "training ended before the checkpoint"
        if path.is_file():
            steps = read_num_timesteps(path)
            if steps > after:
                return steps
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint at {path} within {timeout} s")


def test_sigkill_then_resume_then_sigint_then_finish(tmp_path, tiny_config, popen, run_main):
    cfg = tiny_config(tmp_path, timesteps=100_000)
    run = tmp_path / "runs" / "RedBallDistractors-v0" / "rims" / "seed0"
    ckpt = run / CHECKPOINT

    killed = popen(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--no-progress"], tmp_path / "p1")
    try:
        first = _wait_for_checkpoint(killed, ckpt)
    finally:
        killed.kill()
        killed.wait()
    resume_from = read_num_timesteps(ckpt)  # the file is whole after SIGKILL
    assert first >= 32 and resume_from >= first

    resumed = popen(["train", "--resume", run, "--no-progress"], tmp_path / "p2")
    try:
        _wait_for_checkpoint(resumed, ckpt, after=resume_from)
        resumed.send_signal(signal.SIGINT)
        code = resumed.wait(timeout=60)
    finally:
        resumed.kill()
    out, err = (tmp_path / "p2.out").read_text(), (tmp_path / "p2.err").read_text()
    assert f"resuming {run} from step {resume_from}" in out
    assert code == 130, err
    assert "Traceback" not in err and "checkpoint saved" in err and len(err.strip().splitlines()) == 1
    interrupted_at = read_num_timesteps(ckpt)
    assert interrupted_at > resume_from

    final = interrupted_at + 32
    assert run_main(["train", "--resume", run, "--timesteps", final, "--no-progress"]) == 0
    assert read_num_timesteps(run / "model.zip") == final
    assert "timesteps: 100000" in (run / "config.yaml").read_text()  # stopping early keeps the run's budget
    # one TensorBoard dir for the whole run; its step axis continues instead of restarting at 0
    assert [p.name for p in (run / "tb").iterdir()] == ["train_1"]
    acc = EventAccumulator(str(run / "tb" / "train_1"))
    acc.Reload()
    steps = sorted(e.step for e in acc.Scalars("time/fps"))
    assert steps[-1] == final and steps == sorted(set(steps))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, tiny_config, run_main):
    from agents.ppo import RecurrentPPO

    calls = {"n": 0}
    original = RecurrentPPO.train

    def train_then_fail(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise FloatingPointError("non-finite PPO loss nan (update 2); parameters left unchanged")
        return original(self)

    monkeypatch.setattr(RecurrentPPO, "train", train_then_fail)
    cfg = tiny_config(tmp_path, timesteps=1000)
    code = run_main(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--no-progress"])
    err = capsys.readouterr().err
    (run,) = (tmp_path / "runs").glob("*/rims/seed0")
    assert code == 1
    assert "non-finite loss" in err and "last good checkpoint" in err and len(err.strip().splitlines()) == 1
    # updates 1 and 2 succeeded (64 steps); the checkpoint at 64 steps is kept, no final model written
    assert read_num_timesteps(run / CHECKPOINT) == 64
    assert not (run / "model.zip").exists()


def test_resume_from_an_older_checkpoint_hides_the_stale_tensorboard_steps(tmp_path, tiny_config, run_main):
    """A process killed after its last checkpoint logged steps that the resumed run logs again."""
    import shutil

    import tensorboard.summary.writer.event_file_writer as event_file_writer

    # Event file names end in a per-process counter: from 8 on, "10" sorts before "9", which put a
    # same-second resume's file before the older ones (a CI failure); start there every time.
    event_file_writer._global_uid._value = 8

    cfg = tiny_config(tmp_path, timesteps=64)
    assert run_main(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("*/rims/seed0")
    ckpt = run / CHECKPOINT
    old = tmp_path / "old.zip"
    shutil.copy(ckpt, old)
    old_step = read_num_timesteps(old)
    assert run_main(["train", "--resume", run, "--timesteps", 128, "--no-progress"]) == 0
    shutil.copy(old, ckpt)  # as if the process had been killed right after writing the old checkpoint
    assert run_main(["train", "--resume", run, "--timesteps", 160, "--no-progress"]) == 0

    acc = EventAccumulator(str(run / "tb" / "train_1"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("time/fps")]
    assert old_step in steps and steps[-1] == 160
    assert steps == sorted(set(steps)), steps


def test_a_resumed_event_file_sorts_after_a_same_second_older_one(tmp_path):
    """TensorBoard reads event files in name order; a resume must not land before older files."""
    from torch.utils.tensorboard import SummaryWriter

    from agents.experiments.callbacks import newest_event_timestamp, wait_until_later_second

    now = int(time.time())
    # a file from this very second whose host name sorts after any real one
    (tmp_path / f"events.out.tfevents.{now}.zzzz.1.0").write_bytes(b"")
    assert newest_event_timestamp(tmp_path) == now
    wait_until_later_second(newest_event_timestamp(tmp_path))
    writer = SummaryWriter(log_dir=str(tmp_path))
    writer.close()
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert names[-1].split(".")[3] > str(now) and "zzzz" not in names[-1], names
