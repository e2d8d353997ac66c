"""SB3 callbacks of training: progress bar, periodic checkpoints, signals, periodic eval, sweep progress."""
from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat
from torch.utils.tensorboard import SummaryWriter

from agents.experiments.devices import torch_threads
from agents.experiments.evaluation.episodes import EVAL_THREADS, run_episodes
from agents.experiments.files import atomic_write_text
from agents.experiments.runs import BEST_MODEL, BEST_SCORE, CHECKPOINT, atomic_save
from agents.experiments.tb_tags import periodic_tag


def recent_mean_return(model) -> float | None:
    """Mean true return of the last (up to 100) finished training episodes, or None."""
    buffer = getattr(model, "ep_info_buffer", None)
    if not buffer:
        return None
    return float(np.mean([info["r"] for info in buffer]))


class ProgressCallback(BaseCallback):
    """Progress bar with steps, fps and recent mean return (rich on a terminal, plain lines otherwise).

    It extends SB3's ``progress_bar`` (steps only) with the two numbers one watches while training.
    On a non-terminal (logs, CI) it prints one line about every ``1/lines`` of the run instead.
    """

    def __init__(self, label: str = "train", lines: int = 10) -> None:
        super().__init__()
        self.label = label
        self.lines = lines
        self._progress: Any = None
        self._task: Any = None
        self._console: Any = None

    def _on_training_start(self) -> None:
        self._console = Console()
        self.total = int(self.locals["total_timesteps"])
        self._t0, self._n0 = time.perf_counter(), self.model.num_timesteps
        self._next_line = self._n0
        if self._console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[fps]} fps  return {task.fields[ret]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self._console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self._n0, fps="-", ret="-")

    def _stats(self) -> tuple[str, str]:
        elapsed = time.perf_counter() - self._t0
        fps = (self.model.num_timesteps - self._n0) / elapsed if elapsed > 0 else 0.0
        ret = recent_mean_return(self.model)
        return f"{fps:.0f}", ("-" if ret is None else f"{ret:.3g}")

    def _on_step(self) -> bool:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.model.num_timesteps)
        return True

    def _on_rollout_end(self) -> None:
        fps, ret = self._stats()
        if self._progress is not None:
            self._progress.update(self._task, completed=self.model.num_timesteps, fps=fps, ret=ret)
        elif self.model.num_timesteps >= self._next_line:
            self._console.print(f"{self.label}: step {self.model.num_timesteps}/{self.total}  {fps} fps  "
                                f"return {ret}", highlight=False, markup=False)
            self._next_line = self.model.num_timesteps + max(1, self.total // self.lines)

    def _on_training_end(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.model.num_timesteps)
        self.close()

    def close(self) -> None:
        """Stop the live display (also after an exception inside ``learn``); safe to call twice."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class CheckpointCallback(BaseCallback):
    """Save ``<run>/checkpoints/last.zip`` atomically every ``freq`` steps (0 = never).

    It saves at the start of a rollout, i.e. after the previous update, so the saved weights,
    optimizer state and step count belong together: a resume redoes no update and skips none.
    """

    def __init__(self, run_dir: str | Path, freq: int) -> None:
        super().__init__()
        self.path = Path(run_dir) / CHECKPOINT
        self.freq = freq
        self.saved_at: int | None = None

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.freq > 0 and self.model.num_timesteps - self._last >= self.freq:
            atomic_save(self.model, self.path)
            self._last = self.saved_at = self.model.num_timesteps

    def _on_step(self) -> bool:
        return True


def newest_event_timestamp(log_dir: str | Path, exclude: Path | None = None) -> int:
    """The largest whole-second timestamp in the names of ``log_dir``'s TensorBoard event files."""
    fields = (p.name.split(".")[3] for p in Path(log_dir).glob("events.out.tfevents.*") if p != exclude)
    return max((int(f) for f in fields if f.isdigit()), default=0)


def wait_until_later_second(timestamp: int) -> None:
    """Sleep until ``int(time.time())`` exceeds ``timestamp`` (at most about one second here)."""
    delay = timestamp + 1 - time.time()
    if delay > 0:
        time.sleep(delay)


class PurgeStaleEventsCallback(BaseCallback):
    """On a resume from a checkpoint at step N, hide the TensorBoard events with step > N.

    A process killed after its last checkpoint (SIGKILL, power loss) has logged steps that the
    resumed run logs again; TensorBoard's purge marker (``SummaryWriter(purge_step=N + 1)``) drops
    the stale ones, so the curves run on without doubling back. TensorBoard reads a dir's event
    files in name order, and a name starts with a whole-second timestamp, so the new file is opened
    only once its timestamp sorts after every older file of the dir.
    """

    def _on_training_start(self) -> None:
        for fmt in self.model.logger.output_formats:
            if isinstance(fmt, TensorBoardOutputFormat):
                log_dir = fmt.writer.log_dir
                own_file = Path(fmt.writer.file_writer.event_writer._file_name)
                fmt.writer.close()
                wait_until_later_second(newest_event_timestamp(log_dir, exclude=own_file))
                fmt.writer = SummaryWriter(log_dir=log_dir, purge_step=self.model.num_timesteps + 1)

    def _on_step(self) -> bool:
        return True


class GracefulStop:
    """Context manager: the first SIGINT/SIGTERM only sets ``signal_name``; a second one interrupts.

    Training polls ``signal_name`` through :class:`StopOnSignalCallback` and stops at the next step,
    so a checkpoint can be written before the process exits.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StopOnSignalCallback(BaseCallback):
    """Stop ``learn`` at the next env step once ``stop.signal_name`` is set.

    ``kept_steps`` is the step count at the end of the last whole rollout: the steps whose data goes
    into an update. A rollout stopped midway is discarded (SB3 skips its update), so a checkpoint
    written after the stop records ``kept_steps``, and a resumed run ends at the same rollout boundary
    as an uninterrupted one.
    """

    def __init__(self, stop: GracefulStop) -> None:
        super().__init__()
        self.stop = stop
        self.kept_steps: int | None = None

    def _on_training_start(self) -> None:
        self.kept_steps = self.model.num_timesteps

    def _on_rollout_end(self) -> None:
        self.kept_steps = self.model.num_timesteps

    def _on_step(self) -> bool:
        return self.stop.signal_name is None


class PeriodicEvalCallback(BaseCallback):
    """Every ``freq`` steps: evaluate on ``shifts`` (paired episodes, the same seeds each time), log
    ``validation/mean_return``, ``validation/std_return`` and (where episodes succeed)
    ``validation/success_rate`` at the training step (a group after the learning curves': see
    :mod:`agents.experiments.tb_tags`), and keep the best model (by mean return) as ``best_model.zip``,
    its score in ``best_model.json``: a resumed run starts from that score, so a worse model never
    replaces the best one of an earlier session."""

    def __init__(self, run_dir: str | Path, env_id: str, shifts: dict[str, int] | None, episodes: int,
                 freq: int, seed: int) -> None:
        super().__init__()
        self.path, self.score_path = Path(run_dir) / BEST_MODEL, Path(run_dir) / BEST_SCORE
        self.env_id, self.shifts, self.episodes, self.freq, self.seed = env_id, shifts, episodes, freq, seed
        self.best: float = self._saved_best()

    def _saved_best(self) -> float:
        """The mean return of the kept best model (-inf when there is none or its score is unreadable)."""
        if not self.path.is_file():
            return -np.inf
        try:
            return float(json.loads(self.score_path.read_text())["mean_return"])
        except (OSError, ValueError, KeyError, TypeError):
            return -np.inf

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.freq <= 0 or self.model.num_timesteps - self._last < self.freq:
            return
        self._last = self.model.num_timesteps
        with torch_threads(EVAL_THREADS):
            episodes = run_episodes(self.model, self.env_id, self.shifts, self.episodes, seed=self.seed + 10_000)
        returns = np.array([e.ret for e in episodes])
        mean = float(returns.mean())
        self.logger.record(periodic_tag("mean_return"), mean)
        self.logger.record(periodic_tag("std_return"), float(returns.std()))
        if episodes[0].success is not None:
            self.logger.record(periodic_tag("success_rate"), float(np.mean([e.success for e in episodes])))
        if mean > self.best:
            self.best = mean
            atomic_save(self.model, self.path)
            atomic_write_text(self.score_path, json.dumps({"mean_return": mean, "step": int(self.model.num_timesteps),
                                                           "episodes": self.episodes}))

    def _on_step(self) -> bool:
        return True


class ReportProgressCallback(BaseCallback):
    """Report the step count at the start and after every rollout to ``progress`` (a sweep task's
    :class:`~agents.experiments.sweep.progress.ProgressWriter`, which never raises: a lost report is a
    lost display, never a failed run)."""

    def __init__(self, progress: Any) -> None:
        super().__init__()
        self.progress = progress

    def _on_training_start(self) -> None:
        self.progress.report(self.model.num_timesteps, force=True)

    def _on_rollout_end(self) -> None:
        self.progress.report(self.model.num_timesteps)

    def _on_step(self) -> bool:
        return True
