"""The sweep's terminal display: a live status line while the runs train, and the final table.

Run dirs and reasons are user text (a logdir may hold ``[``): nothing of theirs is read as rich markup.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any, Sequence

from rich.console import Console
from rich.live import Live

from agents.experiments.runs import TRAIN_LOG
from agents.experiments.sweep.grid import PlannedRun, RunOutcome

FPS_WINDOW_S = 20.0


class LiveLine:
    """One live status line: runs done / running / failed / waiting, steps against budgets, fps, ETA.

    On a terminal a rich live line (on ``file``, default stdout); otherwise one plain line per finished
    run. Runs are keyed by their run dir. ``total_runs``: the runs to expect (default: those added so far); a run not yet added counts
    as waiting, with the mean budget of the added ones.
    """

    def __init__(self, total_runs: int | None = None, enabled: bool = True, file: IO[str] | None = None) -> None:
        self.total_runs = total_runs
        self.console = Console(file=file)  # None: sys.stdout at each write
        self.budgets: dict[str, int] = {}
        self.done = self.failed = 0
        self.ended: set[str] = set()
        self.steps: dict[str, int] = {}
        self.running: set[str] = set()
        self.history: list[tuple[float, int]] = []
        self.live: Any = None
        if enabled and self.console.is_terminal:
            self.live = Live(self.text(), console=self.console, refresh_per_second=2, transient=True)
            self.live.start()

    def add(self, run: PlannedRun) -> None:
        """Count ``run`` (submitted) among the runs to show."""
        self.budgets[str(run.run_dir)] = int(run.cfg["timesteps"])

    @property
    def waiting(self) -> int:
        """Runs neither ended nor running (queued, or not yet submitted)."""
        expected = max(self.total_runs or 0, len(self.budgets))
        return max(0, expected - self.done - self.failed - len(self.running))

    def counts(self) -> dict[str, int]:
        """The line's numbers: runs ``done``, ``running``, ``failed`` (or interrupted), ``waiting``; ``steps``."""
        return {"done": self.done, "running": len(self.running), "failed": self.failed, "waiting": self.waiting,
                "steps": sum(self.steps.values())}

    def text(self) -> str:
        """The status line."""
        budgets = [b for key, b in self.budgets.items() if key not in self.ended or self.steps.get(key)]
        total = sum(budgets)
        if self.total_runs and self.total_runs > len(self.budgets) and self.budgets:
            total += (self.total_runs - len(self.budgets)) * sum(self.budgets.values()) // len(self.budgets)
        now_steps = sum(self.steps.values())
        fps = 0.0
        if len(self.history) >= 2:
            (t_a, s_a), (t_b, s_b) = self.history[0], self.history[-1]
            fps = (s_b - s_a) / (t_b - t_a) if t_b > t_a else 0.0
        remaining = max(0, total - now_steps)
        eta = f"{remaining / fps:.0f} s" if fps > 0 else "-"
        return (f"sweep: {self.done} done, {len(self.running)} running, {self.failed} failed, {self.waiting} waiting"
                f" | {now_steps}/{total} steps, {fps:.0f} fps, ETA {eta}")

    def update(self, steps: dict[str, int], running: set[str]) -> None:
        """Show the step counts (by run dir) and the runs with a live attempt."""
        self.steps.update({key: n for key, n in steps.items() if key not in self.ended})
        self.running = set(running) - self.ended
        now = time.perf_counter()
        self.history = [h for h in self.history if now - h[0] <= FPS_WINDOW_S] + [(now, sum(self.steps.values()))]
        if self.live is not None:  # here only: the driver updates about once a second, text() reads every run
            self.live.update(self.text())

    def finished(self, outcome: RunOutcome) -> None:
        """Count a run that ended and print one line about it."""
        key = str(outcome.run.run_dir)
        if outcome.status == "done":
            self.done += 1
            if outcome.steps is not None:
                self.steps[key] = outcome.steps
        else:
            self.failed += 1
            self.steps[key] = 0  # a failed run no longer counts
        self.running.discard(key)
        self.ended.add(key)
        detail = f"{outcome.steps} steps" if outcome.status == "done" else outcome.reason
        self.console.print(f"{outcome.status}: {outcome.run.run_dir} ({detail})", markup=False, emoji=False,
                           highlight=False, soft_wrap=True)

    def stop(self) -> None:
        """End the live line (idempotent)."""
        if self.live is not None:
            self.live.stop()
            self.live = None


class DriverStdout:
    """A stand-in for ``sys.stdout`` while Ray runs in this process: the driver thread's writes (the thread
    that installs it) go to ``stdout``, every other thread's to ``stderr``.

    Ray's driver prints what its background threads receive (e.g. the last 50 lines of a dead node's
    raylet log, 36 of them ``[state-dump]``) to ``sys.stdout``, into the sweep's own lines and table. The
    sweep writes stdout from its driver thread only; the live line's refresh thread is given the real
    stdout itself.
    """

    def __init__(self, stdout: IO[str], stderr: IO[str]) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.driver = threading.current_thread()

    def write(self, text: str) -> int:
        return (self.stdout if threading.current_thread() is self.driver else self.stderr).write(text)

    def flush(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... of the real stdout
        return getattr(self.stdout, name)

    def install(self) -> "DriverStdout":
        """Make this ``sys.stdout``."""
        sys.stdout = self  # type: ignore[assignment]
        return self

    def uninstall(self) -> None:
        """Give ``sys.stdout`` back (unless someone replaced this meanwhile)."""
        if sys.stdout is self:
            sys.stdout = self.stdout


def print_outcomes(outcomes: Sequence[RunOutcome]) -> None:
    """The final table: every run as done / skipped / failed / interrupted, steps, reason and log."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "interrupted")}
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(outcomes)} runs)")
    width = max((len(str(o.run.run_dir)) for o in outcomes), default=7)
    print(f"  {'status':11s} {'steps':>9s}  {'run dir':{width}s}  note")
    for o in outcomes:
        steps = "-" if o.steps is None else str(o.steps)
        note = ""
        if o.status in ("failed", "interrupted"):
            log = o.run.run_dir / TRAIN_LOG
            note = f"{o.reason} (log: {log})" if log.is_file() else str(o.reason)
        elif o.status == "skipped":
            note = "already done"
        print(f"  {o.status:11s} {steps:>9s}  {str(o.run.run_dir):{width}s}  {note}".rstrip())
