"""The sweep on Ray: one task per run (:func:`run_task`) and the driver (:func:`sweep`, :func:`run_planned`).

The driver imports neither torch nor SB3: only the tasks do, in the Ray workers.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Sequence

import ray
import ray.exceptions as rex

from agents.checks import check_dir
from agents.experiments.devices import check_device_name, resolve_device
from agents.experiments.evaluation.results import RESULTS_FILE
from agents.experiments.outcomes import Interrupted, SweepFailed
from agents.experiments.runs import (CHECKPOINT, EVAL_DIR, FINAL_MODEL, TRAIN_LOG, env_dirname, read_num_timesteps,
                                     run_dir_lock)
from agents.experiments.sweep.grid import Grid, PlannedRun, RunOutcome, plan_sweep
from agents.experiments.sweep.live import LiveLine, print_outcomes
from rims_rl.errors import UserError, first_line


# ---------------------------------------------------------------- the Ray side

class ProgressBoard:
    """A Ray actor that collects every run's step count; the driver reads it for the live line."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}
        self.running: set[str] = set()

    def report(self, name: str, steps: int, running: bool = True) -> None:
        self.steps[name] = int(steps)
        (self.running.add if running else self.running.discard)(name)

    def snapshot(self) -> tuple[dict[str, int], set[str]]:
        return dict(self.steps), set(self.running)


class BoardClient:
    """A task's handle on the sweep's :class:`ProgressBoard`, looked up by name at the first report.

    The driver creates the board after submitting the tasks, so that the tasks, not the board, get the
    workers ``ray.init`` starts ahead; a report made before the board is registered is skipped (the
    next one, after the following rollout, gets through). ``board_name`` None: the sweep shows no live
    line, so there is no board and reports go nowhere."""

    def __init__(self, board_name: str | None) -> None:
        self.board_name = board_name
        self.actor: Any = None

    def report(self, name: str, steps: int, running: bool = True) -> None:
        if self.board_name is None:
            return
        if self.actor is None:
            try:
                self.actor = ray.get_actor(self.board_name)
            except ValueError:  # not registered yet
                return
        self.actor.report.remote(name, steps, running)


def run_task(cfg: dict, run_dir: str, device: str, evaluation: dict | None, board: Any, name: str) -> dict:
    """One sweep task (runs in a Ray worker): train ``run_dir`` to its budget, then evaluate it if asked.

    Holds the run dir's lock throughout; all output goes to ``<run>/train.log``. A finished run is
    not trained again, an interrupted one resumes from its checkpoint (also on a Ray retry).
    Returns ``{"status": "done" | "failed" | "interrupted", "steps", "reason"}``. A UserError fails the
    run at once (a retry would change nothing); any other exception (a bug, an OS error) is raised, so
    that Ray retries the task.
    """
    # Imported here, in the worker: the driver that defines the task must not import torch.
    from agents.experiments.callbacks import ReportProgressCallback
    from agents.experiments.evaluation.evaluate import evaluate_run
    from agents.experiments.train import train_run

    path = Path(run_dir)
    t0 = time.time()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_dir_lock(path))
            path.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(path / TRAIN_LOG, "a", buffering=1))
        except (UserError, OSError) as e:
            return {"status": "failed", "reason": first_line(e), "steps": None}
        stack.enter_context(contextlib.redirect_stdout(log))
        stack.enter_context(contextlib.redirect_stderr(log))
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} sweep task {name} (pid {os.getpid()}, device {device}, "
              f"Ray node {_node_id()})")
        try:
            if not (path / FINAL_MODEL).is_file():
                train_run(cfg, path, resume=True, progress=True, device=device,
                          callbacks=[ReportProgressCallback(board, name)])
            steps = read_num_timesteps(path / FINAL_MODEL)
            board.report(name, steps, False)
            if evaluation is not None:
                evaluate_run(path, shifts=evaluation["shifts"], episodes=evaluation["episodes"], device=device)
        except UserError as e:
            print(f"failed: {first_line(e)}")
            board.report(name, 0, False)
            return {"status": "failed", "reason": first_line(e), "steps": None}
        except (Interrupted, KeyboardInterrupt) as e:
            print(f"interrupted: {e or type(e).__name__}")
            steps = _steps_in(path / CHECKPOINT)
            saved = f"checkpoint at step {steps}" if steps is not None else "no checkpoint yet"
            return {"status": "interrupted", "reason": f"stopped by Ctrl-C; {saved}", "steps": steps}
        except BaseException:
            traceback.print_exc()
            print("the task failed; Ray retries it while retries are left (resuming from the checkpoint)")
            raise
        print(f"done: {steps} steps in {time.time() - t0:.1f} s")
    return {"status": "done", "reason": None, "steps": steps}


def task_options(run: PlannedRun, gpus_per_run: float, retries: int) -> dict[str, Any]:
    """The Ray options of ``run``'s task: its CPUs and GPUs, and ``retries`` retries of any exception it
    raises (:func:`run_task` raises all but user errors) or of a dead worker."""
    return dict(num_cpus=max(1, run.cfg["threads"]), num_gpus=gpus_per_run, max_retries=retries,
                retry_exceptions=True, name=f"rims-rl {run.name}")


def _node_id() -> str:
    """The Ray node running this task; "-" outside Ray (a direct call), without starting Ray there
    (``ray.get_runtime_context`` would start a local instance and leave it running)."""
    if not ray.is_initialized():
        return "-"
    return ray.get_runtime_context().get_node_id()


def _task_failure_reason(error: BaseException) -> str:
    """One line for a Ray error of a task: the remote exception, or that the worker died."""
    if isinstance(error, rex.RayTaskError):
        cause = error.cause if getattr(error, "cause", None) is not None else error
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()
    if isinstance(error, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError)):
        return f"its worker process died ({type(error).__name__}) and no retries were left"
    return first_line(error)


def _start_ray(address: str | None, workers: int) -> None:
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token warning for a private local instance
        # Workers import this package like the driver does: an installed package needs nothing, a
        # source checkout run with `python train_agent.py` gets its root on the workers' path.
        # Set in the environment the local instance's processes inherit, not as a runtime_env: workers
        # of a runtime_env cannot be the ones Ray starts ahead with ray.init, so every task waited for
        # a new worker process.
        root = str(Path(__file__).resolve().parents[3])
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, before) if p)
        try:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        finally:
            if before is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = before
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--address {address}: cannot join a Ray cluster there ({first_line(e)})") from None


# ---------------------------------------------------------------- the driver

def sweep(
    grid: Grid,
    logdir: str | os.PathLike = "runs",
    evaluate: bool = False,
    episodes: int | None = None,
    workers: int | None = None,
    address: str | None = None,
    device: str | None = None,
    gpus_per_run: float | None = None,
    retries: int = 1,
    progress: bool = True,
) -> list[RunOutcome]:
    """Train (and evaluate) every run of ``grid`` as Ray tasks, then compare per env (the ``sweep`` command).

    ``device``: auto, cpu or cuda for every run (None: the config's ``device``). Raises
    :class:`SweepFailed` naming the failed runs after all others ended, and
    :class:`agents.experiments.outcomes.Interrupted` on Ctrl-C once the running runs have checkpointed.
    """
    if retries < 0:
        raise UserError(f"--retries must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if gpus_per_run is not None and gpus_per_run < 0:
        raise UserError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
    if device is not None:
        check_device_name(device)
    check_dir(logdir, "--logdir")
    logdir = Path(logdir).resolve() if address is None else Path(logdir).absolute()
    plan = plan_sweep(grid, logdir, evaluate, episodes)
    device = sweep_device(device, plan, address, gpus_per_run)
    todo = [p for p in plan if p.todo]
    print(f"rims-rl sweep: {len(plan)} runs ({len({p.cfg['env'] for p in plan})} env(s) x "
          f"{len({p.cfg['core'] for p in plan})} core(s) x {len({p.cfg['seed'] for p in plan})} seed(s)) "
          f"under {logdir}: {len(plan) - len(todo)} already done, {len(todo)} to run "
          f"({sum(p.state == 'resume' for p in todo)} to resume, {sum(p.state == 'done' for p in todo)} "
          f"to evaluate only)")
    outcomes = {id(p): RunOutcome(p, "skipped", _steps_in(p.run_dir / FINAL_MODEL)) for p in plan if not p.todo}
    if todo:
        outcomes.update(_run_on_ray(todo, evaluate, episodes, workers, address, device, gpus_per_run, retries,
                                    progress))
    ordered = [outcomes[id(p)] for p in plan]
    print_outcomes(ordered)
    if evaluate:
        _compare_per_env(ordered, logdir)
    _raise_if_failed(ordered)
    return ordered


def sweep_device(device: str | None, plan: list[PlannedRun], address: str | None, gpus_per_run: float | None) -> str:
    """The device of a sweep's runs: ``device``, else the runs' config ``device``; UserError (before Ray
    starts) for ``cuda:N``, for GPUs with ``cpu``, and for ``cuda`` on a local machine without CUDA."""
    if device is None:
        device = plan[0].cfg.get("device", "auto") if plan else "auto"
    device = check_device_name(device)
    if device.startswith("cuda:"):
        raise UserError(f"device {device}: in a sweep Ray gives each run its GPU; use --device cuda "
                        f"(or auto) and --gpus-per-run")
    if device == "cpu" and gpus_per_run:
        raise UserError(f"--gpus-per-run {gpus_per_run} with --device cpu: the runs would not use their GPUs")
    if address is None and device == "cuda":
        resolve_device(device)  # one line if this machine has no GPU
    return device


def run_planned(runs: list[PlannedRun], workers: int | None = None, device: str | None = None, retries: int = 1,
                progress: bool = True) -> list[RunOutcome]:
    """Train ``runs`` (planned and checked by the caller, e.g. ``demo``) on a local Ray instance; the final table.

    Raises :class:`SweepFailed` if any run failed, after all others ended.
    """
    device = sweep_device(device, runs, None, None)
    outcomes = _run_on_ray(runs, False, None, workers, None, device, None, retries, progress)
    ordered = [outcomes[id(p)] for p in runs]
    print_outcomes(ordered)
    _raise_if_failed(ordered)
    return ordered


def _raise_if_failed(outcomes: Sequence[RunOutcome]) -> None:
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        names = ", ".join(str(o.run.run_dir) for o in failed)
        raise SweepFailed(f"{len(failed)} of {len(outcomes)} runs failed: {names} "
                          f"(reasons and logs in the table above)")


def _steps_in(model_file: Path) -> int | None:
    """The step count stored in ``model_file`` (a run's model.zip or checkpoint), None if unreadable."""
    try:
        return read_num_timesteps(model_file)
    except UserError:
        return None


def _run_on_ray(todo: list[PlannedRun], evaluate: bool, episodes: int | None, workers: int | None,
                address: str | None, device: str, gpus_per_run: float | None, retries: int,
                progress: bool) -> dict[int, RunOutcome]:
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    _start_ray(address, workers)
    display: LiveLine | None = None
    try:
        print(f"Ray {'started locally with ' + str(workers) + ' CPUs' if address is None else 'joined at ' + address}"
              f" in {time.perf_counter() - t0:.1f} s")
        if gpus_per_run is None:
            # The GPUs Ray schedules by (it finds them itself, locally too): a task asking for a GPU that
            # Ray does not count would wait forever. The driver never imports torch for this.
            has_gpus = ray.cluster_resources().get("GPU", 0) > 0
            if device == "cuda" and not has_gpus:
                where = "on this machine" if address is None else f"in the Ray cluster at {address}"
                raise UserError(f"--device cuda: Ray finds no GPU {where}")
            gpus_per_run = 1.0 if device in ("cuda", "auto") and has_gpus else 0.0
        task_device = "cuda" if gpus_per_run > 0 else "cpu"
        display = LiveLine(todo, progress)
        # The progress board feeds the live line only: without one (piped output, --no-progress) there is
        # no board actor, whose process would take CPU from the runs while they start.
        board_name = f"rims-rl progress {uuid.uuid4().hex}" if display.live is not None else None
        remote = ray.remote(run_task)
        refs: dict[Any, PlannedRun] = {}
        for run in todo:
            evaluation = None
            if run.evaluate:
                evaluation = {"shifts": run.cfg["eval"]["sweep"],
                              "episodes": episodes if episodes is not None else run.cfg["eval"]["episodes"]}
            refs[remote.options(**task_options(run, gpus_per_run, retries)).remote(
                run.cfg, str(run.run_dir), task_device, evaluation, BoardClient(board_name), run.name)] = run
        # Created after the tasks, so that they get the workers ray.init started ahead (an actor created
        # first took one, and a task waited for a new worker process).
        board = None
        if board_name is not None:
            board = ray.remote(num_cpus=0)(ProgressBoard).options(name=board_name).remote()
        return _wait_for_runs(refs, board, display)
    finally:
        if display is not None:
            display.stop()
        ray.shutdown()


def _wait_for_runs(refs: dict[Any, PlannedRun], board: Any, display: LiveLine) -> dict[int, RunOutcome]:
    """Collect the tasks as they end, showing the live line (fed by ``board``, None without a live line;
    the caller stops ``display``); on Ctrl-C let the running ones checkpoint."""
    outcomes: dict[int, RunOutcome] = {}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            for ref in ready:
                outcome = _collect(ref, refs[ref])
                outcomes[id(outcome.run)] = outcome
                display.finished(outcome)
            if board is not None:
                display.update(ray.get(board.snapshot.remote()))
    except KeyboardInterrupt:
        display.stop()
        print("interrupted: stopping the running runs at their next step (each saves a checkpoint) ...",
              file=sys.stderr)
        for ref in pending:
            ray.cancel(ref)
        try:
            for ref in pending:
                outcome = _collect(ref, refs[ref], interrupted=True)
                outcomes[id(outcome.run)] = outcome
        except KeyboardInterrupt:
            pass
        for run in refs.values():
            outcomes.setdefault(id(run), RunOutcome(run, "interrupted", _steps_in(run.run_dir / CHECKPOINT),
                                                    "stopped by Ctrl-C"))
        print_outcomes([outcomes[id(r)] for r in refs.values()])
        raise Interrupted("SIGINT: sweep stopped, the running runs saved checkpoints; "
                          "run the same command again to resume") from None
    return outcomes


def _collect(ref: Any, run: PlannedRun, interrupted: bool = False) -> RunOutcome:
    try:
        result = ray.get(ref)
    except rex.TaskCancelledError:
        return RunOutcome(run, "interrupted", _steps_in(run.run_dir / CHECKPOINT), "cancelled before it started")
    except rex.RayError as e:
        if interrupted:
            return RunOutcome(run, "interrupted", _steps_in(run.run_dir / CHECKPOINT), "stopped by Ctrl-C")
        return RunOutcome(run, "failed", None, _task_failure_reason(e))
    return RunOutcome(run, result["status"], result["steps"], result["reason"])


def _compare_per_env(outcomes: Sequence[RunOutcome], logdir: Path) -> None:
    # Imported when the runs have ended: rliable takes over a second to import, before Ray would start.
    from agents.experiments.study import write_comparison

    by_env: dict[str, list[Path]] = {}
    for o in outcomes:
        if o.status in ("done", "skipped") and (o.run.run_dir / EVAL_DIR / RESULTS_FILE).is_file():
            by_env.setdefault(o.run.cfg["env"], []).append(o.run.run_dir)
    for env, runs in by_env.items():
        out = logdir / env_dirname(env) / "compare"
        try:
            write_comparison(runs, out=out, quiet=True)
            print(f"comparison of {env}: {out / 'compare.csv'} (+ compare.png)")
        except UserError as e:
            print(f"comparison of {env} skipped: {first_line(e)}", file=sys.stderr)
