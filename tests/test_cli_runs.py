"""Run dirs, atomic checkpoint writes, model lookup, bootstrap statistics, plots and the video strip."""
import json
import os
import zipfile

import numpy as np
import pytest

from agents.experiments.compare import stratified_bootstrap_ci
from agents.experiments.config import UserError
from agents.experiments.evaluation import Result, Setting, add_retention, summarize, write_results, RESULT_COLUMNS
from agents.experiments.plots import plot_compare, plot_returns_vs_level
from agents.experiments.record import ROW_HEIGHT, activation_strip, compose_frame, write_video
from agents.experiments.runs import (atomic_save, find_run_dirs, read_num_timesteps, refuse_existing, resolve_model_path,
                         run_dir_for)


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


def test_summary_statistics_and_retention():
    base = summarize("E", Setting("none", 0), np.array([1.0, 2.0, 3.0, 4.0]))
    assert base.mean_return == 2.5
    assert base.std_return == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    # t(0.975, 3) = 3.182; half width = 3.182 * std / 2
    assert base.ci95_high - base.mean_return == pytest.approx(3.1824 * base.std_return / 2, rel=1e-3)
    shifted = summarize("E", Setting("distractors", 2, {"distractors": 2}), np.array([1.0, 1.5]))
    results = [base, shifted]
    add_retention(results)
    assert results[0].retention == 1.0
    assert results[1].retention == pytest.approx(1.25 / 2.5)


def test_results_files_have_the_documented_columns(tmp_path):
    r = summarize("E", Setting("none", 0), np.array([1.0, 3.0]))
    add_retention([r])
    csv_path, json_path = write_results([r], tmp_path, {"model": "m"})
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header == list(RESULT_COLUMNS) == ["env", "shift", "level", "episodes", "mean_return", "std_return",
                                              "ci95_low", "ci95_high", "retention"]
    data = json.loads(json_path.read_text())
    assert data["results"][0]["returns"] == [1.0, 3.0] and data["model"] == "m"


def test_stratified_bootstrap_resamples_runs_within_tasks():
    # one run: nothing to resample, the CI collapses to the IQM
    low, high = stratified_bootstrap_ci(np.array([[1.0, 2.0, 3.0]]), reps=200)
    assert low == high == pytest.approx(2.0)
    # task columns are never mixed: a task whose runs all score 10 keeps contributing 10
    scores = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])
    low, high = stratified_bootstrap_ci(scores, reps=500, seed=1)
    assert 0 < low < high < 10
    spread = np.array([[0.0], [0.0], [10.0], [10.0]])
    wide = stratified_bootstrap_ci(spread, reps=500)
    narrow = stratified_bootstrap_ci(np.array([[5.0], [5.0], [5.0], [5.0]]), reps=500)
    assert wide[1] - wide[0] > narrow[1] - narrow[0] == 0


def test_plots_write_pngs(tmp_path):
    rows = [Result("E", "none", 0, 4, 1.0, 0.1, 0.9, 1.1),
            Result("E", "distractors", 1, 4, 0.8, 0.1, 0.7, 0.9),
            Result("E", "distractors", 2, 4, 0.5, 0.1, 0.4, 0.6)]
    png = plot_returns_vs_level(rows, tmp_path / "r.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = [{"env": "E", "core": c, "shift": sh, "runs": 1, "level": lv, "iqm_return": 1.0 - lv / 4, "ci95_low": 0.5,
                "ci95_high": 1.0} for c in ("rims", "lstm") for sh in ("all", "size") for lv in (0, 1, 2)]
    png = plot_compare(summary, tmp_path / "c.png")
    assert png.stat().st_size > 1000


def test_activation_strip_marks_active_rims():
    history = [np.array([True, False, True]), np.array([False, True, True])]
    frame = np.zeros((40, 96, 3), dtype=np.uint8)
    out = compose_frame(frame, history)
    assert out.shape[1] == 96 and out.shape[0] > 40
    strip = activation_strip(history, 96)
    assert strip.shape == (3 * ROW_HEIGHT + 2, 96, 3)
    last_col = strip[2:, -1]  # rightmost pixel column = the current step
    row_mid = [last_col[i * ROW_HEIGHT + 4] for i in range(3)]
    bright = [int(p.sum()) > 300 for p in row_mid]
    assert bright == [False, True, True]
    assert compose_frame(frame, []).shape == frame.shape


def test_write_gif(tmp_path):
    frames = [np.full((16, 16, 3), i * 20, dtype=np.uint8) for i in range(5)]
    path = write_video(frames, tmp_path / "ep.gif", fps=5)
    import imageio.v3 as iio
    assert iio.imread(path, index=None).shape[0] == 5


def test_sigterm_is_caught_once_then_interrupts():
    import signal

    from agents.experiments.callbacks import GracefulStop
    from agents.experiments.train import Interrupted

    handler_before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal_name == "SIGTERM"  # first signal: only recorded, training stops at its next step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # second signal: stop at once
    assert signal.getsignal(signal.SIGTERM) == handler_before
    assert Interrupted("x", "SIGTERM").exit_code == 143 and Interrupted("x", "SIGINT").exit_code == 130
