"""One writer per run dir: a second `train` or `--resume` into a run dir in use gets one line naming the PID."""
from __future__ import annotations

import time

import pytest

from agents.experiments.runs import CHECKPOINT, lock_holder, read_num_timesteps, run_dir_lock


def _wait_for_checkpoint(proc, path, after: int = -1, timeout: float = 90.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "training ended before the checkpoint"
        if path.is_file() and read_num_timesteps(path) > after:
            return read_num_timesteps(path)
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at {path} within {timeout} s")


@pytest.fixture
def refused_with_pid(refused):
    """``refused_with_pid(argv, pid, run)``: run the CLI (in this process, a second writer) and check its
    one-line refusal naming ``pid``."""
    def check(argv, pid: int, run) -> None:
        line = refused(argv)
        assert f"process {pid}" in line and str(run) in line and "in use" in line, line
    return check


def test_a_second_train_and_a_second_resume_into_a_run_dir_in_use_are_refused(tmp_path, tiny_config, popen,
                                                                               refused_with_pid):
    cfg = tiny_config(tmp_path, timesteps=100_000)
    run = tmp_path / "runs" / "RedBallDistractors-v0" / "rims" / "seed0"
    first = popen(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--no-progress"], tmp_path / "p1")
    try:
        _wait_for_checkpoint(first, run / CHECKPOINT)
        config_before = (run / "config.yaml").read_bytes()
        refused_with_pid(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--no-progress"], first.pid,
                         run)
        assert (run / "config.yaml").read_bytes() == config_before
        refused_with_pid(["train", "--resume", run, "--no-progress"], first.pid, run)
    finally:
        first.kill()
        first.wait()
    assert lock_holder(run) is None  # the OS released the lock of the killed process

    # two concurrent --resume: the first holds the run dir, the second is refused
    resumed = popen(["train", "--resume", run, "--no-progress"], tmp_path / "p2")
    try:
        _wait_for_checkpoint(resumed, run / CHECKPOINT, after=read_num_timesteps(run / CHECKPOINT))
        refused_with_pid(["train", "--resume", run, "--no-progress"], resumed.pid, run)
    finally:
        resumed.kill()
        resumed.wait()


def test_the_lock_is_reentrant_in_its_process_and_free_after(tmp_path):
    run = tmp_path / "env" / "rims" / "seed0"
    assert lock_holder(run) is None
    with run_dir_lock(run):
        with run_dir_lock(run):  # a sweep task holds it around train_run, which takes it again
            pass
        assert run.parent.is_dir() and not run.exists()  # the lock lies beside the run dir
    assert lock_holder(run) is None
