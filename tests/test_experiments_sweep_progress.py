"""The live line without a Ray actor: progress files, how the driver reads them (a dead attempt is not
running), the live line's counts, and a sweep task's train.log markers and lock wait. No Ray starts here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from agents.experiments.callbacks import ReportProgressCallback
from agents.experiments.sweep.grid import PlannedRun, RunOutcome
from agents.experiments.sweep.live import LiveLine
from agents.experiments.sweep.progress import PROGRESS_FILE, ProgressReader, ProgressWriter, read_progress
from agents.experiments.sweep.task import ATTEMPT_DIED, ATTEMPT_ENDED, run_task
from agents.experiments.validation import resolve_config, run_config


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(run_dir, session, running=True, steps=64, node="node-a", pid=None, host=None):
    writer = ProgressWriter(run_dir, session, node)
    writer.report(steps, running=running, force=True)
    if pid is not None or host is not None:  # a record of another process or machine
        data = json.loads((run_dir / PROGRESS_FILE).read_text())
        data.update({k: v for k, v in (("pid", pid), ("host", host)) if v is not None})
        (run_dir / PROGRESS_FILE).write_text(json.dumps(data))
    return writer


# ---------------------------------------------------------------- the progress file

def test_a_progress_file_is_written_at_most_once_a_second_unless_forced_or_ended(tmp_path):
    writer = ProgressWriter(tmp_path, "s1", "node-a")
    writer.report(32, force=True)
    record = read_progress(tmp_path)
    assert (record.session, record.node, record.steps, record.running, record.pid) == ("s1", "node-a", 32, True,
                                                                                     os.getpid())
    writer.report(64)  # within the second: kept in memory only
    assert read_progress(tmp_path).steps == 32 and writer.steps == 64
    writer.report(96, running=False)  # an ended attempt always writes
    assert (read_progress(tmp_path).steps, read_progress(tmp_path).running) == (96, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROGRESS_FILE]  # no temp file left


def test_a_progress_write_that_fails_costs_the_display_only(tmp_path):
    (tmp_path / PROGRESS_FILE).mkdir()  # os.replace over a dir fails
    ProgressWriter(tmp_path, "s1").report(5, force=True)
    ProgressWriter(tmp_path / "no" / "such" / "dir", "s1").report(5, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROGRESS_FILE] and read_progress(tmp_path) is None


@pytest.mark.parametrize("content", ["", "{", "null", "[]", '{"steps": 5}',
                                     '{"session": "s1", "attempt": "a", "host": "h", "pid": 1, "node": "n", '
                                     '"steps": "many", "running": true}'])
def test_a_damaged_progress_file_reads_as_none(tmp_path, content):
    (tmp_path / PROGRESS_FILE).write_text(content)
    assert read_progress(tmp_path) is None


def test_the_report_callback_writes_at_the_start_and_after_rollouts(tmp_path):
    writer = ProgressWriter(tmp_path, "s1")
    callback = ReportProgressCallback(writer)
    callback.model = SimpleNamespace(num_timesteps=128)
    callback._on_training_start()
    assert read_progress(tmp_path).steps == 128
    callback.model.num_timesteps = 160
    callback._on_rollout_end()
    assert writer.steps == 160


# ---------------------------------------------------------------- the driver's reading

def test_the_reader_counts_only_live_attempts_of_its_own_session(tmp_path):
    runs = {name: tmp_path / name for name in ("live", "ended", "other-sweep", "dead-node", "dead-pid",
                                                 "other-host", "waiting")}
    for run in runs.values():
        run.mkdir()
    _write(runs["live"], "s1", steps=64)
    _write(runs["ended"], "s1", running=False, steps=128)
    _write(runs["other-sweep"], "s0", steps=999)  # left by an earlier sweep of the same run dirs
    _write(runs["dead-node"], "s1", node="node-b", steps=32)
    _write(runs["dead-pid"], "s1", pid=_dead_pid(), steps=16)  # its worker died on this machine
    _write(runs["other-host"], "s1", pid=_dead_pid(), host="elsewhere", steps=8)  # its pid means nothing here
    steps, running = ProgressReader("s1").poll(runs, alive_nodes={"node-a"})
    assert running == {"live", "other-host"}
    assert steps == {"live": 64, "ended": 128, "dead-node": 32, "dead-pid": 16, "other-host": 8}
    _, running = ProgressReader("s1").poll(runs, alive_nodes=None)  # node liveness unknown
    assert running == {"live", "other-host", "dead-node"}


def test_the_reader_reads_a_bounded_number_of_files_per_poll_and_finds_every_run_in_turn(tmp_path):
    runs = {f"r{i}": tmp_path / f"r{i}" for i in range(10)}
    for run in runs.values():
        run.mkdir()
    for name in ("r7", "r9"):
        _write(runs[name], "s1", steps=int(name[1:]))
    reader = ProgressReader("s1", max_reads=4)
    found = [reader.poll(runs)[1] for _ in range(3)]
    assert found == [set(), {"r7"}, {"r7", "r9"}]  # 4 new files per poll, the seen ones every time


# ---------------------------------------------------------------- the live line's counts

def _run(tmp_path, seed, timesteps=100):
    return PlannedRun({"env": "E", "core": "lstm", "seed": seed, "timesteps": timesteps}, tmp_path / f"seed{seed}",
                      "new")


def test_the_live_line_counts_runs_and_steps(tmp_path, capsys):
    runs = [_run(tmp_path, seed) for seed in range(3)]
    line = LiveLine(total_runs=4, enabled=True)
    assert line.live is None  # captured stdout is no terminal: no live line
    for run in runs:
        line.add(run)
    keys = [str(run.run_dir) for run in runs]
    line.update({keys[0]: 40, keys[1]: 10}, {keys[0], keys[1]})
    assert line.counts() == {"done": 0, "running": 2, "failed": 0, "waiting": 2, "steps": 50}
    assert "0 done, 2 running, 0 failed, 2 waiting | 50/400 steps" in line.text()  # the 4th run: the mean budget
    line.finished(RunOutcome(runs[0], "done", 100))
    line.finished(RunOutcome(runs[1], "failed", None, "it broke [/x]"))
    line.update({keys[0]: 40, keys[1]: 10}, {keys[0], keys[1]})  # late reports of ended runs change nothing
    assert line.counts() == {"done": 1, "running": 0, "failed": 1, "waiting": 2, "steps": 100}
    assert "| 100/300 steps" in line.text()  # a failed run's budget no longer counts
    out = capsys.readouterr().out
    assert out.splitlines() == [f"done: {runs[0].run_dir} (100 steps)", f"failed: {runs[1].run_dir} (it broke [/x])"]


# ---------------------------------------------------------------- the task's log and lock

@pytest.fixture
def tiny_cfg(tmp_path, tiny_config):
    return run_config(resolve_config(str(tiny_config(tmp_path))), "lstm", 0)


def _train_run_raising(monkeypatch, error):
    from agents.experiments import train

    def broken_train_run(*args, **kwargs):
        raise error
    monkeypatch.setattr(train, "train_run", broken_train_run)


def test_each_attempt_ends_its_log_and_the_next_notes_one_that_died(tmp_path, tiny_cfg, monkeypatch):
    from rims_rl.errors import UserError

    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("--- 2026-01-01 00:00:00 sweep task E lstm seed0 (pid 1, device cpu, Ray node n, "
                                   "session s0)\nlstm seed 0: step 32/64\n")  # its worker was killed here
    _train_run_raising(monkeypatch, UserError("a corrupt checkpoint"))
    assert run_task(tiny_cfg, str(run), "cpu", None, "E lstm seed0", "s1")["status"] == "failed"
    lines = (run / "train.log").read_text().splitlines()
    assert lines[2] == ATTEMPT_DIED and " session s1)" in lines[3] and lines[-1] == f"{ATTEMPT_ENDED} (failed)"

    _train_run_raising(monkeypatch, ValueError("a bug"))
    with pytest.raises(ValueError):
        run_task(tiny_cfg, str(run), "cpu", None, "E lstm seed0", "s1")
    log = (run / "train.log").read_text()
    assert log.count(ATTEMPT_DIED) == 1 and log.rstrip().endswith(f"{ATTEMPT_ENDED} (raised)")


def test_a_progress_file_that_cannot_be_written_never_fails_the_run(tmp_path, tiny_cfg):
    run = tmp_path / "run"
    outcome = run_task(tiny_cfg, str(run), "cpu", None, "E lstm seed0", "s1")
    assert outcome["status"] == "done" and read_progress(run).running is False
    (run / "model.zip").unlink()
    (run / PROGRESS_FILE).unlink()
    (run / PROGRESS_FILE).mkdir()  # every write of the resumed run fails
    outcome = run_task(tiny_cfg, str(run), "cpu", None, "E lstm seed0", "s2")
    assert outcome == {"status": "done", "reason": None, "steps": 64}


_HOLD_LOCK = """
import sys, time
from agents.experiments.runs import run_dir_lock
with run_dir_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.mark.parametrize("session, waits", [("s1", True), ("s2", False)])
def test_a_retry_waits_for_its_own_dead_attempt_s_lock_but_not_for_anyone_else_s(tmp_path, tiny_cfg, monkeypatch,
                                                                                  repo, session, waits):
    """Sweep s1's attempt never ended its log and its process still holds the lock (a worker dying slowly,
    a dead node's lock on NFS): s1's retry waits for the lock; any other holder fails the run at once."""
    from rims_rl.errors import UserError

    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("--- 2026-01-01 00:00:00 sweep task E lstm seed0 (pid 1, device cpu, Ray node n, "
                                   "session s1)\n")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(run), "3"], cwd=repo, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert holder.stdout.readline().strip() == b"locked"
        _train_run_raising(monkeypatch, UserError("got the lock"))
        t0 = time.perf_counter()
        outcome = run_task(tiny_cfg, str(run), "cpu", None, "E lstm seed0", session)
        waited = time.perf_counter() - t0
    finally:
        holder.kill()
        holder.wait()
    if waits:
        assert outcome["reason"] == "got the lock" and waited > 1.0, outcome
    else:
        assert f"run dir {run} is in use: process {holder.pid}" in outcome["reason"] and waited < 1.0, outcome
