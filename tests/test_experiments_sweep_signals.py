"""SIGTERM to a sweep's driver does what Ctrl-C does: the running runs save a checkpoint and stop, the table
is printed, the exit code is 143 (no stack dump from Ray's handler), and the same command resumes them.

The sweep runs as a subprocess with its own local Ray instance (``address="local"``), beside other Ray tests.
"""
from __future__ import annotations

import signal
import time

from agents.experiments.runs import CHECKPOINT, FINAL_MODEL, read_num_timesteps
from agents.experiments.sweep.task import ATTEMPT_DIED, ATTEMPT_ENDED

ENV = "RedBallDistractors-v0"
BUDGET = 2048


def test_sigterm_checkpoints_the_running_runs_prints_the_table_exits_143_and_a_rerun_resumes(
        tmp_path, tiny_config, popen, run_script, ray_env):
    args = ["sweep", "--config", tiny_config(tmp_path, timesteps=BUDGET), "--core", "lstm", "--seed", 0, 1,
            "--logdir", tmp_path / "runs", "--workers", 2, "--no-progress"]
    runs = [tmp_path / "runs" / ENV / "lstm" / f"seed{seed}" for seed in (0, 1)]
    proc = popen(args, tmp_path / "sweep")
    try:
        deadline = time.time() + 180
        while not all((run / CHECKPOINT).is_file() for run in runs):
            assert proc.poll() is None and time.time() < deadline, "no checkpoints before the end"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    out, err = (tmp_path / "sweep.out").read_text(), (tmp_path / "sweep.err").read_text()
    assert code == 143, out + err
    assert "Traceback" not in err and "SIGTERM received" not in err, err  # no Python or C++ stack dump
    assert err.strip().splitlines()[-1].startswith("rims-rl: SIGTERM: stopped, the running runs saved checkpoints"), err
    table = {line.split()[2]: line for line in out.splitlines() if line.startswith("  interrupted")}
    assert "sweep: 2 interrupted (of 2 runs)" in out and set(table) == {str(run) for run in runs}, out
    for run in runs:
        saved = read_num_timesteps(run / CHECKPOINT)
        assert 0 < saved < BUDGET and not (run / FINAL_MODEL).exists()
        assert table[str(run)].split()[1] == str(saved)
        assert f"stopped by SIGTERM; checkpoint at step {saved}" in table[str(run)]
        assert (run / "train.log").read_text().rstrip().endswith(f"{ATTEMPT_ENDED} (interrupted)")

    again = run_script(args, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 to run (2 to resume" in again.stdout and "sweep: 2 done (of 2 runs)" in again.stdout
    for run in runs:
        assert read_num_timesteps(run / FINAL_MODEL) >= BUDGET  # where exactly a resumed run ends is train's to test
        log = (run / "train.log").read_text()
        assert f"resuming {run} from step" in log and ATTEMPT_DIED not in log  # the first attempt ended cleanly
