"""The sweep's terminal display: a live status line while the runs train, and the final table."""
from __future__ import annotations

import time
from typing import Any, Sequence

from rich.console import Console
from rich.live import Live

from agents.experiments.runs import TRAIN_LOG
from agents.experiments.sweep.grid import PlannedRun, RunOutcome


class LiveLine:
    """One live status line: runs done / running / failed / waiting, aggregate fps, ETA.

    On a terminal a rich live line; otherwise one plain line per finished run.
    """

    def __init__(self, runs: list[PlannedRun], enabled: bool = True) -> None:
        self.runs = {r.name: r for r in runs}
        self.console = Console()
        self.done = self.failed = 0
        self.ended: set[str] = set()
        self.steps: dict[str, int] = {}
        self.running: set[str] = set()
        self.history: list[tuple[float, int]] = []
        self.t0 = time.perf_counter()
        self.live: Any = None
        if enabled and self.console.is_terminal:
            self.live = Live(self._text(), console=self.console, refresh_per_second=2, transient=True)
            self.live.start()

    def _text(self) -> str:
        total = sum(r.cfg["timesteps"] for name, r in self.runs.items() if name not in self.ended or
                    self.steps.get(name))  # a failed run no longer counts
        now_steps = sum(self.steps.values())
        fps = 0.0
        if len(self.history) >= 2:
            (t_a, s_a), (t_b, s_b) = self.history[0], self.history[-1]
            fps = (s_b - s_a) / (t_b - t_a) if t_b > t_a else 0.0
        remaining = max(0, total - now_steps)
        eta = f"{remaining / fps:.0f} s" if fps > 0 else "-"
        waiting = len(self.runs) - self.done - self.failed - len(self.running)
        return (f"sweep: {self.done} done, {len(self.running)} running, {self.failed} failed, {max(0, waiting)} waiting"
                f" | {now_steps}/{total} steps, {fps:.0f} fps, ETA {eta}")

    def update(self, snapshot: tuple[dict[str, int], set[str]]) -> None:
        """Show the step counts and running runs of the progress board's ``snapshot``."""
        steps, running = snapshot
        self.steps.update({name: n for name, n in steps.items() if name not in self.ended})
        self.running = running - self.ended
        now = time.perf_counter()
        self.history = [h for h in self.history if now - h[0] <= 20.0] + [(now, sum(self.steps.values()))]
        if self.live is not None:
            self.live.update(self._text())

    def finished(self, outcome: RunOutcome) -> None:
        """Count a run that ended and print one line about it."""
        if outcome.status == "done":
            self.done += 1
            if outcome.steps is not None:
                self.steps[outcome.run.name] = outcome.steps
        else:
            self.failed += 1
            self.steps[outcome.run.name] = 0
        self.running.discard(outcome.run.name)
        self.ended.add(outcome.run.name)
        detail = f"{outcome.steps} steps" if outcome.status == "done" else outcome.reason
        self.console.print(f"{outcome.status}: {outcome.run.run_dir} ({detail})", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        """End the live line (idempotent)."""
        if self.live is not None:
            self.live.stop()
            self.live = None


def print_outcomes(outcomes: Sequence[RunOutcome]) -> None:
    """The final table: every run as done / skipped / failed / interrupted, steps, reason and log."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "interrupted")}
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(outcomes)} runs)")
    width = max(len(str(o.run.run_dir)) for o in outcomes)
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
