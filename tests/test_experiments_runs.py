"""Run dirs, atomic checkpoint writes, model lookup, bootstrap statistics, plots and the video strip."""
import json
import os
import zipfile

import numpy as np
import pytest

from agents.experiments.record import (LABEL_WIDTH, ROW_HEIGHT, TEXT_HEIGHT, activation_strip, caption, compose_frame,
                                       write_video)
from agents.experiments.runs import (atomic_save, find_run_dirs, read_num_timesteps, refuse_existing, resolve_model_path,
                                     run_dir_for)
from rims_rl.errors import UserError


class _FakeModel:
    """Writes an SB3-like zip; optionally fails half-way to simulate a crash during a save."""

    def __init__(self, steps, fail=False):
        self.steps, self.fail = steps, fail

    def save(self, f):
        with zipfile.ZipFile(f, "w") as archive:
            archive.writestr("data", json.dumps({"num_timesteps": self.steps}))
            if self.fail:
                raise RuntimeError("disk full")


def test_run_dir_layout(tmp_path):
    assert run_dir_for(tmp_path, "ALE/Breakout-v5", "rims", 3) == tmp_path / "ALE-Breakout-v5" / "rims" / "seed3"


def test_refuse_existing(tmp_path):
    refuse_existing(tmp_path / "new")
    with pytest.raises(UserError, match="already exists.*--resume"):
        refuse_existing(tmp_path)


def test_atomic_save_replaces_and_a_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.zip"
    atomic_save(_FakeModel(100), path)
    assert read_num_timesteps(path) == 100
    atomic_save(_FakeModel(200), path)
    assert read_num_timesteps(path) == 200
    with pytest.raises(RuntimeError):
        atomic_save(_FakeModel(300, fail=True), path)
    assert read_num_timesteps(path) == 200
    assert os.listdir(path.parent) == ["last.zip"]  # no temp file left behind


def test_corrupt_model_is_a_user_error(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="corrupt"):
        read_num_timesteps(bad)


def test_resolve_model_path(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="not a run dir|neither a model file nor a run dir"):
        resolve_model_path(run)
    (run / "config.yaml").write_text("env: x\n")
    with pytest.raises(UserError, match="has no model"):
        resolve_model_path(run)
    atomic_save(_FakeModel(1), run / "checkpoints" / "last.zip")
    assert resolve_model_path(run) == (run / "checkpoints" / "last.zip", run)
    atomic_save(_FakeModel(2), run / "model.zip")
    assert resolve_model_path(run) == (run / "model.zip", run)
    assert resolve_model_path(run / "checkpoints" / "last.zip") == (run / "checkpoints" / "last.zip", run)
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_path(tmp_path / "nope.zip")
    assert find_run_dirs([tmp_path]) == [run]
    staging = tmp_path / ".seed1.publishing"  # a copy being staged (fair_runs.py publish) is no run dir yet
    staging.mkdir()
    (staging / "config.yaml").write_text("env: x\n")
    assert find_run_dirs([tmp_path]) == [run] == find_run_dirs([tmp_path, run])
    hidden_root = tmp_path / ".runs"  # a hidden folder named itself is searched
    (hidden_root / "seed0").mkdir(parents=True)
    (hidden_root / "seed0" / "config.yaml").write_text("env: x\n")
    assert find_run_dirs([hidden_root]) == [hidden_root / "seed0"]


def test_activation_strip_marks_active_rims_in_the_raster_colours():
    from agents.rims_logging import ACTIVE_RGB, INACTIVE_RGB

    history = [np.array([True, False, True]), np.array([False, True, True])]
    frame = np.zeros((40, 96, 3), dtype=np.uint8)
    strip = activation_strip(history, 96, window=2)  # a 2-step episode: two wide columns
    assert strip.shape == (3 * ROW_HEIGHT + 2, 96, 3)
    col = (96 - LABEL_WIDTH) // 2
    for step, mask in enumerate(history):
        x = LABEL_WIDTH + step * col + col // 2  # the middle of the step's column
        cells = [tuple(strip[2 + i * ROW_HEIGHT + ROW_HEIGHT // 2, x]) for i in range(3)]
        assert cells == [ACTIVE_RGB if m else INACTIVE_RGB for m in mask]
    assert col > 30  # readable: a short episode fills the width instead of 2 px columns
    out = compose_frame(frame, history, window=2, text=caption(96, 2, 2, "2 (forward)", 0.5, 0.5))
    assert out.shape == (40 + strip.shape[0] + TEXT_HEIGHT + 2 * TEXT_HEIGHT, 96, 3)  # + legend + caption
    assert compose_frame(frame, []).shape == frame.shape


def test_write_gif(tmp_path):
    frames = [np.full((16, 16, 3), i * 20, dtype=np.uint8) for i in range(5)]
    path = write_video(frames, tmp_path / "ep.gif", fps=5)
    import imageio.v3 as iio
    assert iio.imread(path, index=None).shape[0] == 5


def test_sigterm_is_caught_once_then_interrupts():
    import signal

    from agents.experiments.callbacks import GracefulStop
    from agents.experiments.outcomes import Interrupted

    handler_before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal_name == "SIGTERM"  # first signal: only recorded, training stops at its next step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # second signal: stop at once
    assert signal.getsignal(signal.SIGTERM) == handler_before
    assert Interrupted("x", "SIGTERM").exit_code == 143 and Interrupted("x", "SIGINT").exit_code == 130
