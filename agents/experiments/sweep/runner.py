"""The runner: :class:`RunnerSession` runs planned runs as Ray tasks (``sweep``, ``demo`` and ``tune`` submit
to it and wait on it).

The driver imports neither torch nor SB3: only the tasks do, in the Ray workers.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from types import FrameType
from typing import Any

import ray
import ray.exceptions as rex

from agents.checks import check_episodes
from agents.experiments.config import EVAL_SEED
from agents.experiments.devices import check_device_name
from agents.experiments.evaluation.ladder import ladder_settings
from agents.experiments.outcomes import Interrupted
from agents.experiments.runs import CHECKPOINT
from agents.experiments.sweep import cluster
from agents.experiments.sweep.grid import PlannedRun, RunOutcome
from agents.experiments.sweep.live import LiveLine, DriverStdout, print_outcomes
from agents.experiments.sweep.progress import ProgressReader
from agents.experiments.sweep.task import cpus_of, run_task, steps_in, task_failure_reason, task_options
from rims_rl.errors import UserError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
REFRESH_S = 1.0  # the live line's progress files are read about once a second
NODES_REFRESH_S = 2.0  # and the alive nodes asked of Ray every two seconds


class RunnerSession:
    """Planned runs as Ray tasks on a local Ray instance or a cluster, with the live line (``sweep``, ``tune``).

    ``with RunnerSession(...) as s:`` starts Ray (``workers`` CPUs) or joins the cluster at ``address``,
    checks that it can hold a run (GPUs), and starts the live line; leaving the block stops the live line
    and shuts Ray down (a joined cluster keeps running). In the block, :meth:`submit` runs and call
    :meth:`wait` until :attr:`running` is 0.

    Ctrl-C or SIGTERM to the driver: the next :meth:`wait` cancels the running tasks, so that each saves a
    checkpoint and stops, prints the table of every submitted run and raises :class:`Interrupted` (exit
    code 130 or 143); a second signal stops waiting for the checkpoints.

    :param workers: CPUs of the local Ray instance (default: all cores); ignored with ``address``
    :param address: a Ray cluster to join (``auto``, ``HOST:PORT``) instead of starting one
    :param device: auto, cpu or cuda: the runs train on CUDA when they get GPUs (``auto`` with GPUs in
        the cluster, or ``cuda``), else on the CPU
    :param gpus_per_run: GPUs per run (a fraction below 1 shares a GPU); default 1 when the device is CUDA
        or auto on a cluster with GPUs, else 0
    :param retries: Ray's retries of a run that raises (not a user error) or whose worker or node dies
    :param progress: show the live line (on a terminal)
    :param total_runs: the runs the live line expects (default: those submitted so far)
    """

    def __init__(self, workers: int | None = None, address: str | None = None, device: str = "auto",
                 gpus_per_run: float | None = None, retries: int = 1, progress: bool = True,
                 total_runs: int | None = None) -> None:
        check_options(workers, gpus_per_run, retries)
        device = check_sweep_device(device, gpus_per_run)
        self.workers = workers or os.cpu_count() or 1
        self.address, self.device, self.retries = address, device, retries
        self.gpus_per_run: float = gpus_per_run if gpus_per_run is not None else 0.0
        self._gpus_asked = gpus_per_run
        self.progress, self.total_runs = progress, total_runs
        self.session = uuid.uuid4().hex
        self.task_device = "cpu"
        self._where = "on this machine" if address is None else f"in the Ray cluster at {address}"
        self._nodes: list[cluster.NodeResources] = []
        self._pending: dict[Any, PlannedRun] = {}
        self._submitted: list[PlannedRun] = []
        self._outcomes: dict[int, RunOutcome] = {}
        self._cpus_per_run = 1
        self._display: LiveLine | None = None
        self._reader = ProgressReader(self.session)
        self._remote: Any = None
        self._signal: str | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._started = False
        self._next_refresh = self._next_nodes = 0.0
        self._alive_ids: set[str] | None = None
        self._stdout: DriverStdout | None = None

    # ------------------------------------------------------------ start and stop

    def __enter__(self) -> "RunnerSession":
        t0 = time.perf_counter()
        self._stdout = DriverStdout(sys.stdout, sys.stderr).install()
        if threading.current_thread() is threading.main_thread():  # restored on exit: Ray's own stays behind
            self._previous_handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
        try:
            if self.address is None:
                cluster.start_local(self.workers)
            else:
                cluster.join_cluster(self.address)
        except BaseException as e:
            if ray.is_initialized() or isinstance(e, SystemExit):  # SystemExit: ray.init stopped half-way
                ray.shutdown()
            self.__exit__(None, None, None)
            if not (isinstance(e, SystemExit) and e.code == signal.SIGTERM):  # Ray's SIGTERM handler during ray.init
                raise
            raise Interrupted("SIGTERM: stopped while Ray was starting; no run had started", "SIGTERM") from None
        self._started = True
        try:
            # Installed after ray.init, which sets a SIGTERM handler of its own (exit 15 after Ray's C++
            # stack dump): SIGTERM must stop the sweep as Ctrl-C does.
            self._install_signal_handlers()
            where = (f"started locally with {self.workers} CPUs" if self.address is None
                     else f"joined at {self.address}")
            print(f"Ray {where} in {time.perf_counter() - t0:.1f} s")
            self._nodes = cluster.alive_nodes()
            self._resolve_gpus()
            self._remote = ray.remote(run_task)
            self._display = LiveLine(self.total_runs, self.progress, file=self._stdout.stdout)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._display is not None:
            self._display.stop()
        if self._started:
            ray.shutdown()
            self._started = False
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers = {}
        if self._stdout is not None:
            self._stdout.uninstall()
            self._stdout = None

    def _resolve_gpus(self) -> None:
        """The GPUs per run and the runs' device, from what Ray counts (it schedules by that count, locally
        too: a task asking for a GPU that Ray does not count would wait forever; the driver never asks torch)."""
        has_gpus = any(n.gpus > 0 for n in self._nodes)
        if self.device == "cuda" and not has_gpus:
            raise UserError(f"--device cuda: Ray finds no GPU {self._where}")
        if self._gpus_asked is None:
            self.gpus_per_run = 1.0 if self.device in ("cuda", "auto") and has_gpus else 0.0
        cluster.check_gpus_per_run(self.gpus_per_run, self._nodes, self._where)
        self.task_device = "cuda" if self.gpus_per_run > 0 else "cpu"

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # Python allows handlers only there
            return
        for sig in SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None:
            raise KeyboardInterrupt  # a second signal: stop waiting for the checkpoints
        self._signal = signal.Signals(signum).name

    # ------------------------------------------------------------ runs

    def check(self, run: PlannedRun, evaluation: dict | None = None) -> None:
        """UserError if ``run`` (with ``evaluation``) could never run here: CPUs per run (its config's
        ``threads``) above the largest node's, or an invalid evaluation request."""
        self._require_started()
        if evaluation is not None:
            episodes = evaluation.get("episodes")
            if not isinstance(episodes, int) or isinstance(episodes, bool):
                raise UserError(f"evaluation episodes must be an integer, got {episodes!r}")
            check_episodes(episodes, EVAL_SEED)
            ladder_settings(run.cfg["env"], evaluation.get("shifts"))
        cluster.check_cpus_per_run(cpus_of(run), self.gpus_per_run, self._nodes, self._where)

    def submit(self, run: PlannedRun, evaluation: dict | None = None) -> None:
        """Start ``run`` as a Ray task (it waits for a free CPU), evaluating it after training when
        ``evaluation`` (``{"shifts": ..., "episodes": N}``) is given; UserError (nothing submitted) for a
        request that could never run (:meth:`check`)."""
        self.check(run, evaluation)
        ref = self._remote.options(**task_options(run, self.gpus_per_run, self.retries)).remote(
            run.cfg, str(run.run_dir), self.task_device, evaluation, run.name, self.session)
        self._pending[ref] = run
        self._submitted.append(run)
        self._cpus_per_run = max(self._cpus_per_run, cpus_of(run))
        assert self._display is not None
        self._display.add(run)

    @property
    def running(self) -> int:
        """The submitted runs that have not ended yet (training or waiting for a CPU)."""
        return len(self._pending)

    def capacity(self, cpus_per_run: int | None = None) -> int:
        """How many runs can run at once: the alive nodes' CPU (and GPU) slots over the CPUs (GPUs) per run
        (``cpus_per_run`` default: the most any submitted run asks for, 1 before the first)."""
        self._require_started()
        return cluster.runs_at_once(cluster.alive_nodes(), cpus_per_run or self._cpus_per_run, self.gpus_per_run)

    def wait(self, timeout: float = 0.5) -> list[RunOutcome]:
        """The runs that ended since the last call (done, failed or interrupted), waiting up to ``timeout``
        seconds for one; updates the live line. After Ctrl-C or SIGTERM: stops the running runs at a
        checkpoint, prints the table of every submitted run and raises :class:`Interrupted`."""
        self._require_started()
        ready: list[Any] = []
        if self._signal is None and self._pending:
            try:
                ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
            except KeyboardInterrupt:  # no handler of ours (not the main thread)
                self._signal = "SIGINT"
        if self._signal is not None:
            self._interrupt(self._signal)
        ended = []
        for ref in ready:
            outcome = _collect(ref, self._pending.pop(ref))
            self._outcomes[id(outcome.run)] = outcome
            self._display.finished(outcome)
            ended.append(outcome)
        self._refresh_display()
        return ended

    def status(self) -> dict[str, int]:
        """The live line's counts, read afresh from the runs' progress files: ``done``, ``running`` (runs
        with a live attempt: an attempt whose worker or node died is not one), ``failed`` (also
        interrupted), ``waiting`` and ``steps`` (of all runs)."""
        self._require_started()
        self._refresh_display(force=True)
        assert self._display is not None
        return self._display.counts()

    def _require_started(self) -> None:
        if self._display is None or not self._started:
            raise RuntimeError("RunnerSession used outside its `with` block")

    def _refresh_display(self, force: bool = False) -> None:
        """Feed the live line from the runs' progress files (without a live line only when ``force``d, at
        most once a second otherwise); a failure here is a lost display only."""
        if self._display is None or not (force or (self._display.live is not None
                                                   and time.monotonic() >= self._next_refresh)):
            return
        self._next_refresh = time.monotonic() + REFRESH_S
        try:
            if force or time.monotonic() >= self._next_nodes:
                self._next_nodes = time.monotonic() + NODES_REFRESH_S
                try:
                    self._alive_ids = {n.node_id for n in cluster.alive_nodes()}
                except Exception:  # noqa: BLE001 - Ray busy or the head unreachable: node liveness unknown
                    self._alive_ids = None
            runs = {str(run.run_dir): run.run_dir for run in self._pending.values()}
            steps, running = self._reader.poll(runs, self._alive_ids)
            self._display.update(steps, running)
        except Exception:  # noqa: BLE001 - the display never takes a run or the sweep down
            pass

    def _interrupt(self, signal_name: str) -> None:
        """Stop every running task at a checkpoint, print the table of every submitted run, raise Interrupted."""
        assert self._display is not None
        self._display.stop()
        print(f"interrupted ({signal_name}): stopping the running runs at their next step (each saves a "
              f"checkpoint) ...", file=sys.stderr)
        why = "Ctrl-C" if signal_name == "SIGINT" else signal_name
        pending = list(self._pending)
        for ref in pending:
            ray.cancel(ref)
        try:
            for ref in pending:
                outcome = _collect(ref, self._pending.pop(ref), stopped_by=why)
                self._outcomes[id(outcome.run)] = outcome
        except KeyboardInterrupt:
            pass
        self._pending.clear()
        for run in self._submitted:
            self._outcomes.setdefault(id(run), RunOutcome(run, "interrupted", steps_in(run.run_dir / CHECKPOINT),
                                                          f"stopped by {why}"))
        print_outcomes([self._outcomes[id(run)] for run in self._submitted])
        raise Interrupted(f"{signal_name}: stopped, the running runs saved checkpoints; "
                          f"run the same command again to resume", signal_name)


def check_options(workers: int | None, gpus_per_run: float | None, retries: int) -> None:
    """UserError for ``--workers`` below 1, negative ``--gpus-per-run`` or ``--retries``."""
    if retries < 0:
        raise UserError(f"--retries must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if gpus_per_run is not None and gpus_per_run < 0:
        raise UserError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")


def check_sweep_device(device: str, gpus_per_run: float | None) -> str:
    """``device`` checked for a sweep: auto, cpu or cuda (Ray gives each run its GPU, so not ``cuda:N``),
    and no GPUs per run with ``cpu``."""
    device = check_device_name(device)
    if device.startswith("cuda:"):
        raise UserError(f"device {device}: in a sweep Ray gives each run its GPU; use --device cuda "
                        f"(or auto) and --gpus-per-run")
    if device == "cpu" and gpus_per_run:
        raise UserError(f"--gpus-per-run {gpus_per_run} with --device cpu: the runs would not use their GPUs")
    return device


def _collect(ref: Any, run: PlannedRun, stopped_by: str | None = None) -> RunOutcome:
    """The outcome of ``run``'s ended task ``ref``; ``stopped_by``: the signal that cancelled it."""
    try:
        result = ray.get(ref)
    except rex.TaskCancelledError:
        return RunOutcome(run, "interrupted", steps_in(run.run_dir / CHECKPOINT), "cancelled before it started")
    except rex.RayError as e:
        if stopped_by is not None:
            return RunOutcome(run, "interrupted", steps_in(run.run_dir / CHECKPOINT), f"stopped by {stopped_by}")
        return RunOutcome(run, "failed", None, task_failure_reason(e))
    reason = result["reason"]
    if result["status"] == "interrupted":
        reason = f"stopped by {stopped_by or 'a signal'}; {reason}"
    return RunOutcome(run, result["status"], result["steps"], reason)
