"""The Ray task of one sweep run (:func:`run_task`) and its options (:func:`task_options`).

The task runs in a Ray worker and imports torch there; this module itself does not (the driver
imports it to submit the task).
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path
from typing import Any

import ray
import ray.exceptions as rex

from agents.experiments.outcomes import Interrupted
from agents.experiments.runs import (CHECKPOINT, FINAL_MODEL, TRAIN_LOG, is_run_dir, read_num_timesteps,
                                     run_dir_lock)
from agents.experiments.sweep.grid import PlannedRun
from agents.experiments.sweep.progress import ProgressWriter
from rims_rl.errors import UserError, first_line

ATTEMPT_ENDED = "--- attempt ended"
ATTEMPT_DIED = "--- the previous attempt stopped without finishing (its worker or node died)"
LOCK_WAIT_S = 120.0  # a dead attempt's lock lingers until its process is gone (on NFS: until its lease ends)


def run_task(cfg: dict, run_dir: str, device: str, evaluation: dict | None, name: str, session: str) -> dict:
    """One sweep task (runs in a Ray worker): train ``run_dir`` to its budget, then evaluate it if asked.

    Holds the run dir's lock throughout; all output goes to ``<run>/train.log``, each attempt between
    a header naming ``session`` and a final ``--- attempt ended`` line (an attempt whose worker or node
    died has none: the next one notes it). The step count goes to ``<run>/progress.json`` for the
    driver's live line. A finished run is not trained again, an interrupted one resumes from its
    checkpoint (also on a Ray retry). Returns ``{"status": "done" | "failed" | "interrupted", "steps",
    "reason"}``. A UserError fails the run at once (a retry would change nothing); any other exception
    (a bug, an OS error) is raised, so that Ray retries the task.
    """
    # Imported here, in the worker: the driver that defines the task must not import torch.
    from agents.experiments.callbacks import ReportProgressCallback
    from agents.experiments.evaluation.evaluate import evaluate_run
    from agents.experiments.train import train_run

    path = Path(run_dir)
    t0 = time.time()
    progress = ProgressWriter(path, session, _node_id())
    with contextlib.ExitStack() as stack:
        try:
            _lock_run_dir(stack, path, session)
            path.mkdir(parents=True, exist_ok=True)
            unfinished = _previous_attempt_unfinished(path / TRAIN_LOG) is not None
            log = stack.enter_context(open(path / TRAIN_LOG, "a", buffering=1))
        except (UserError, OSError) as e:
            return {"status": "failed", "reason": first_line(e), "steps": None}
        stack.enter_context(contextlib.redirect_stdout(log))
        stack.enter_context(contextlib.redirect_stderr(log))
        if unfinished:
            print(ATTEMPT_DIED)
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} sweep task {name} (pid {os.getpid()}, device {device}, "
              f"Ray node {progress.node}, session {session})")
        try:
            if is_run_dir(path):  # a new run reports once train_run has created it
                progress.report(steps_in(path / FINAL_MODEL) or steps_in(path / CHECKPOINT) or 0, force=True)
            if not (path / FINAL_MODEL).is_file():
                train_run(cfg, path, resume=True, progress=True, device=device,
                          callbacks=[ReportProgressCallback(progress)])
            steps = read_num_timesteps(path / FINAL_MODEL)
            progress.report(steps, force=True)
            if evaluation is not None:
                evaluate_run(path, shifts=evaluation["shifts"], episodes=evaluation["episodes"], device=device)
            print(f"done: {steps} steps in {time.time() - t0:.1f} s")
            result = {"status": "done", "reason": None, "steps": steps}
        except UserError as e:
            print(f"failed: {first_line(e)}")
            result = {"status": "failed", "reason": first_line(e), "steps": None}
        except (Interrupted, KeyboardInterrupt):
            steps = steps_in(path / CHECKPOINT)
            saved = f"checkpoint at step {steps}" if steps is not None else "no checkpoint yet"
            print(f"interrupted ({saved}); the command that started this run resumes it when run again")
            result = {"status": "interrupted", "reason": saved, "steps": steps}
        except BaseException:
            traceback.print_exc()
            print("the task failed; Ray retries it while retries are left (resuming from the checkpoint)")
            print(f"{ATTEMPT_ENDED} (raised)")
            raise
        finally:
            progress.report(progress.steps, running=False)
        print(f"{ATTEMPT_ENDED} ({result['status']})")
    return result


def _previous_attempt_unfinished(log: Path) -> str | None:
    """The header of the last sweep attempt in ``log`` if that attempt never wrote its end line (its
    worker or node died), else None. Only the log's tail is read."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    markers = [line for line in tail.splitlines() if line.startswith("--- ")]
    if markers and " sweep task " in markers[-1] and " session " in markers[-1]:
        return markers[-1]
    return None


def _lock_run_dir(stack: contextlib.ExitStack, path: Path, session: str) -> None:
    """Take the run dir's writer lock into ``stack``. A retry of this ``session``'s own dead attempt waits
    up to :data:`LOCK_WAIT_S` for the dying attempt to let go; anyone else's lock fails at once."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            stack.enter_context(run_dir_lock(path))
            return
        except UserError:
            header = _previous_attempt_unfinished(path / TRAIN_LOG)
            if header is None or not header.endswith(f"session {session})") or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def cpus_of(run: PlannedRun) -> int:
    """The CPUs ``run``'s task asks Ray for: its config's ``threads``, at least one."""
    return max(1, int(run.cfg.get("threads") or 1))


def task_options(run: PlannedRun, gpus_per_run: float, retries: int) -> dict[str, Any]:
    """The Ray options of ``run``'s task: its CPUs and GPUs, and ``retries`` retries of any exception it
    raises (:func:`run_task` raises all but user errors) or of a dead worker or node."""
    return dict(num_cpus=cpus_of(run), num_gpus=gpus_per_run, max_retries=retries,
                retry_exceptions=True, name=f"rims-rl {run.name}")


def _node_id() -> str:
    """The Ray node running this task; "-" outside Ray (a direct call), without starting Ray there
    (``ray.get_runtime_context`` would start a local instance and leave it running)."""
    if not ray.is_initialized():
        return "-"
    return ray.get_runtime_context().get_node_id()


def task_failure_reason(error: BaseException) -> str:
    """One line for a Ray error of a task: the remote exception, or that the worker died."""
    if isinstance(error, rex.RayTaskError):
        cause = error.cause if getattr(error, "cause", None) is not None else error
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()
    if isinstance(error, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError)):
        return f"its worker process died ({type(error).__name__}) and no retries were left"
    return first_line(error)


def steps_in(model_file: Path) -> int | None:
    """The step count stored in ``model_file`` (a run's model.zip or checkpoint), None if unreadable."""
    try:
        return read_num_timesteps(model_file)
    except UserError:
        return None
