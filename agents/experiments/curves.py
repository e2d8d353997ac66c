"""Learning curves across seeds from each run's training log (the TensorBoard events under ``<run>/tb/``).

Signals (TensorBoard tags): ``rollout/ep_rew_mean`` (SB3: mean return of the last 100 training
episodes, unshifted) and, when periodic evaluation ran (``eval.freq > 0``, on ``eval.shifts``),
``validation/mean_return`` and ``validation/success_rate`` (``eval/...`` in older run dirs, see
:mod:`agents.experiments.tb_tags`). Each run's curve is linearly interpolated onto a
common grid of env steps (up to the shortest run), then the IQM across the core's runs is taken
at each grid point with a 95% bootstrap CI over runs (whole curves resampled; none with one run).

A run published without its event logs carries the same events as ``curves.csv``
(:func:`write_curves_csv`); it is read where ``tb/`` holds no training events.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import trim_mean

from agents.experiments.bootstrap import curve_cis
from agents.experiments.files import atomic_write_text
from agents.experiments.runs import TB_DIR, TRAIN_TB_NAME, read_run_config
from agents.experiments.tb_tags import OLD_PERIODIC_TAGS, periodic_tag
from rims_rl.errors import UserError

PERIODIC = {periodic_tag("mean_return"): "periodic eval return",
            periodic_tag("success_rate"): "periodic eval success rate"}
TAGS = {"rollout/ep_rew_mean": "training return (unshifted)", **PERIODIC}
FPS_TAG = "time/fps"  # with its wall times: how long each training process ran
GRID_POINTS = 40
CURVE_REPS = 2000
CURVES_FILE = "curves.csv"
CURVES_COLUMNS = ("process", "tag", "step", "wall_time", "value")


class Event(NamedTuple):
    """One scalar of a run's training log; ``process`` numbers the training processes (a resume adds one)."""

    process: int
    tag: str
    step: int
    wall_time: float
    value: float


def _train_dirs(run_dir: Path) -> list[Path]:
    """``tb/train_<N>`` in numeric order (``train_10`` after ``train_2``)."""
    def number(path: Path) -> tuple[int, str]:
        suffix = path.name.removeprefix(f"{TRAIN_TB_NAME}_")
        return (int(suffix), "") if suffix.isdigit() else (1 << 62, suffix)
    return sorted(Path(run_dir, TB_DIR).glob(f"{TRAIN_TB_NAME}_*"), key=number)


def _tensorboard_events(run_dir: Path) -> list[Event]:
    """Every event file of ``tb/train_*`` is one training process (a resume writes a new file).

    Curve events follow TensorBoard's own rules for a resumed log: a process started with ``purge_step``
    (``PurgeStaleEventsCallback``) drops every earlier curve event at or after that step, and a step
    lower than a tag's last one drops that tag's events from it on, so the abandoned part of a killed
    process never shows. ``time/fps`` events are all kept: the abandoned time was spent training.
    """
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog
    from tensorboard.util.tensor_util import make_ndarray

    fps: list[Event] = []
    curves: dict[str, dict[int, Event]] = {}

    def purge(tags: list[str], step: int) -> None:
        for tag in tags:
            for s in [s for s in curves[tag] if s >= step]:
                del curves[tag][s]

    files = [f for d in _train_dirs(run_dir) for f in sorted(d.glob("events.out.tfevents.*"))]
    for process, path in enumerate(files):
        for event in LegacyEventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                purge(list(curves), int(event.step))
                continue
            for value in event.summary.value:
                name = OLD_PERIODIC_TAGS.get(value.tag, value.tag)
                if name not in TAGS and name != FPS_TAG:
                    continue
                number = (value.simple_value if value.WhichOneof("value") == "simple_value"
                          else float(make_ndarray(value.tensor)))
                e = Event(process, name, int(event.step), float(event.wall_time), float(number))
                if name == FPS_TAG:
                    fps.append(e)
                    continue
                mine = curves.setdefault(name, {})
                if mine and e.step < next(reversed(mine)):  # the last key is the largest step
                    purge([name], e.step)
                mine[e.step] = e
    return fps + [e for tag in curves.values() for e in sorted(tag.values(), key=lambda e: e.step)]


def _csv_events(path: Path) -> list[Event]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(CURVES_COLUMNS) <= set(reader.fieldnames):
                raise ValueError(f"header {reader.fieldnames}")
            return [Event(int(r["process"]), r["tag"], int(r["step"]), float(r["wall_time"]), float(r["value"]))
                    for r in reader]
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}: {e}); columns: {', '.join(CURVES_COLUMNS)}") from None


def training_events(run_dir: str | os.PathLike) -> list[Event]:
    """The run's training scalars (TAGS and ``time/fps``): from ``tb/``, else from ``curves.csv``, else none."""
    events = _tensorboard_events(Path(run_dir))
    if not events and Path(run_dir, CURVES_FILE).is_file():
        events = _csv_events(Path(run_dir, CURVES_FILE))
    return events


def write_curves_csv(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the run's training scalars as CSV (``CURVES_COLUMNS``), what ``training_events`` reads back."""
    rows = [",".join(CURVES_COLUMNS)]
    rows += [f"{e.process},{e.tag},{e.step},{e.wall_time!r},{e.value!r}" for e in training_events(run_dir)]
    return atomic_write_text(path, "\n".join(rows) + "\n")


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{tag: (steps, values)}`` of the training events of a run (TAGS only, older runs' periodic-evaluation
    tags read as today's); a step logged twice (resumed runs) keeps its last value."""
    merged: dict[str, dict[int, float]] = {}
    for e in training_events(run_dir):
        if e.tag in TAGS:
            merged.setdefault(e.tag, {})[e.step] = e.value
    return {tag: (np.array(sorted(points)), np.array([points[s] for s in sorted(points)]))
            for tag, points in merged.items()}


def iqm_curve(values: np.ndarray, reps: int = CURVE_REPS, seed: int = 0) -> dict[str, Any]:
    """IQM across runs per grid point of ``values [runs, points]`` with 95% CIs (None for one run)."""
    out: dict[str, Any] = {"runs": int(values.shape[0]),
                           "iqm": trim_mean(values, proportiontocut=0.25, axis=0).tolist(),
                           "ci95_low": None, "ci95_high": None}
    if values.shape[0] > 1:
        low, high = curve_cis(values, reps, seed)
        out["ci95_low"], out["ci95_high"] = low.tolist(), high.tolist()
    return out


def learning_curves(run_dirs: list[Path], reps: int = CURVE_REPS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{env: {signal name: {run label: {"steps", "iqm", "ci95_low", "ci95_high", "runs"}}}}`` for the runs
    that logged the signal (signals without any run are left out). Periodic-evaluation labels name
    the evaluation's shifts (``eval.shifts`` of the runs' config), e.g. "periodic eval return (distractors=2)"."""
    logs = []
    for run in run_dirs:
        cfg = read_run_config(run)
        shifts = (cfg.get("eval") or {}).get("shifts") or "unshifted"
        logs.append((cfg["env"], cfg["label"], shifts, read_scalars(run)))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for env in sorted({e for e, _, _, _ in logs}):
        for tag, signal in TAGS.items():
            for label in sorted({c for e, c, _, _ in logs if e == env}):
                mine = [(sh, s[tag]) for e, c, sh, s in logs if e == env and c == label and tag in s and len(s[tag][0])]
                if not mine:
                    continue
                series = [points for _, points in mine]
                end = min(steps[-1] for steps, _ in series)
                start = max(steps[0] for steps, _ in series)
                grid = np.linspace(start, end, GRID_POINTS) if end > start else np.array([end], dtype=float)
                values = np.stack([np.interp(grid, steps, vals) for steps, vals in series])
                name = f"{signal} ({mine[0][0]})" if tag in PERIODIC else signal
                out.setdefault(env, {}).setdefault(name, {})[label] = {"steps": grid.tolist(), **iqm_curve(values, reps)}
    return out


def training_wall_seconds(run_dir: str | os.PathLike, rollout_steps: int) -> float | None:
    """Seconds a run spent training, from its training events (None without any).

    Each training process (the first run and every resume) logs its own events; its time is the span
    between its first and last ``time/fps`` events plus its first rollout (``rollout_steps`` env steps at
    the first logged fps). Set-up and evaluation are not counted.
    """
    processes: dict[int, list[Event]] = {}
    for e in training_events(run_dir):
        if e.tag == FPS_TAG:
            processes.setdefault(e.process, []).append(e)
    total = 0.0
    for points in processes.values():
        points.sort(key=lambda e: e.wall_time)
        first, last = points[0], points[-1]
        total += last.wall_time - first.wall_time + (rollout_steps / first.value if first.value > 0 else 0.0)
    return total if processes else None
