"""A sweep run's progress file: the step count its task writes, the driver reads for the live line.

``<run>/progress.json`` holds the step count of the run's current task attempt and who runs it (the
driver's session, the attempt, host, pid and Ray node). It lives in the run dir, which every node of
a cluster sees (a cluster sweep needs that already), so the live line needs no Ray actor that a node's
death could take down. The file is a display only: writing it never raises (a lost update is a lost
display, never a failed run), and the driver ignores a missing, damaged or foreign file.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

PROGRESS_FILE = "progress.json"
WRITE_INTERVAL_S = 1.0  # a tiny run ends a rollout every few ms; the live line refreshes about once a second


@dataclass(frozen=True)
class Progress:
    """One progress report: ``steps`` of ``attempt`` (of the sweep ``session``), running or ended."""

    session: str
    attempt: str
    host: str
    pid: int
    node: str  # Ray node id, "-" outside Ray
    steps: int
    running: bool


class ProgressWriter:
    """Writes a task attempt's progress to ``<run_dir>/progress.json`` (at most once per
    :data:`WRITE_INTERVAL_S` unless forced); never raises."""

    def __init__(self, run_dir: str | os.PathLike, session: str, node: str = "-") -> None:
        self.path = Path(run_dir) / PROGRESS_FILE
        self.session, self.node = session, node
        self.attempt = uuid.uuid4().hex
        self.steps = 0
        self._last_write = -float("inf")

    def report(self, steps: int, running: bool = True, force: bool = False) -> None:
        """Record ``steps``; write the file if forced, if the attempt ended, or if the last write is old."""
        self.steps = int(steps)
        now = time.monotonic()
        if not (force or not running or now - self._last_write >= WRITE_INTERVAL_S):
            return
        self._last_write = now
        record = Progress(self.session, self.attempt, socket.gethostname(), os.getpid(), self.node, self.steps,
                          running)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")  # removed by a resume if left behind
        try:
            tmp.write_text(json.dumps(asdict(record)))
            os.replace(tmp, self.path)  # no fsync: a display survives no crash anyway
        except Exception:  # noqa: BLE001 - a full disk or a dir being removed costs the display only
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def read_progress(run_dir: str | os.PathLike) -> Progress | None:
    """The progress record in ``run_dir``, or None if there is none or it is unreadable or malformed."""
    try:
        data = json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
        record = Progress(**data)
    except (OSError, ValueError, TypeError):
        return None
    if not (isinstance(record.steps, int) and isinstance(record.pid, int) and isinstance(record.running, bool)):
        return None
    return record


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's process: it exists
    return True


class ProgressReader:
    """The driver's view of its runs' progress files: steps per run and which runs have a live attempt.

    An attempt counts as running while its file says so, its Ray node is alive and, on this host, its
    process exists: a worker or node that died mid-run is no longer shown as running. Each poll reads
    the runs seen running first, then others in turn, at most ``max_reads`` files, so that a grid of
    20,000 waiting runs costs no more per refresh than a few hundred.
    """

    def __init__(self, session: str, max_reads: int = 512) -> None:
        self.session, self.max_reads = session, max_reads
        self.host = socket.gethostname()
        self.steps: dict[str, int] = {}
        self.seen: dict[str, Progress] = {}
        self._cursor = 0

    def poll(self, runs: dict[str, Path], alive_nodes: Iterable[str] | None = None) -> tuple[dict[str, int], set[str]]:
        """Read the progress of ``runs`` (name -> run dir, the runs not yet ended); returns (steps of
        every run that reported, names of the runs with a live attempt). ``alive_nodes`` None: node
        liveness unknown (every node counts as alive)."""
        alive = None if alive_nodes is None else set(alive_nodes)
        for gone in set(self.seen) - set(runs):
            del self.seen[gone]
        names = list(runs)
        order = [n for n in names if n in self.seen]
        if len(names) > len(order):
            rest = [n for n in names if n not in self.seen]
            start = self._cursor % len(rest)
            order += rest[start:] + rest[:start]
        order = order[:max(self.max_reads, len(self.seen))]
        self._cursor += max(0, len(order) - len(self.seen))
        for name in order:
            record = read_progress(runs[name])
            if record is not None and record.session == self.session:
                self.seen[name] = record
                self.steps[name] = record.steps
        running = {name for name, record in self.seen.items() if self._live(record, alive)}
        return dict(self.steps), running

    def _live(self, record: Progress, alive_nodes: set[str] | None) -> bool:
        if not record.running:
            return False
        if alive_nodes is not None and record.node != "-" and record.node not in alive_nodes:
            return False
        return record.host != self.host or pid_alive(record.pid)
