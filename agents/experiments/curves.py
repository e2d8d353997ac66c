"""Learning curves across seeds from each run's training log (the TensorBoard events under ``<run>/tb/``).

Signals (TensorBoard tags): ``rollout/ep_rew_mean`` (SB3: mean return of the last 100 training
episodes, unshifted) and, when periodic evaluation ran (``eval.freq > 0``, on ``eval.shifts``),
``validation/mean_return`` and ``validation/success_rate`` (``eval/...`` in older run dirs, see
:mod:`agents.experiments.tb_tags`). Each run's curve is linearly interpolated onto a
common grid of env steps (up to the shortest run), then the IQM across the core's runs is taken
at each grid point with a 95% bootstrap CI over runs (whole curves resampled; none with one run).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import trim_mean

from agents.experiments.bootstrap import curve_cis
from agents.experiments.runs import TB_DIR, TRAIN_TB_NAME, read_run_config
from agents.experiments.tb_tags import OLD_PERIODIC_TAGS, periodic_tag

PERIODIC = {periodic_tag("mean_return"): "periodic eval return",
            periodic_tag("success_rate"): "periodic eval success rate"}
TAGS = {"rollout/ep_rew_mean": "training return (unshifted)", **PERIODIC}
GRID_POINTS = 40
CURVE_REPS = 2000


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{tag: (steps, values)}`` of the training events of a run (every ``tb/train_*`` dir, TAGS only,
    older runs' periodic-evaluation tags read as today's); a step logged twice (resumed runs) keeps its
    last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, float]] = {}
    for tb in sorted(Path(run_dir, TB_DIR).glob(f"{TRAIN_TB_NAME}_*")):
        acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            name = OLD_PERIODIC_TAGS.get(tag, tag)
            if name in TAGS:
                for event in acc.Scalars(tag):
                    merged.setdefault(name, {})[int(event.step)] = float(event.value)
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

    Each training process (the first run and every resume) writes its own event file; its time is the
    span between its first and last ``time/fps`` events plus its first rollout (``rollout_steps``
    env steps at the first logged fps). Set-up and evaluation are not counted.
    """
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    total, found = 0.0, False
    for events_file in sorted(Path(run_dir, TB_DIR).glob(f"{TRAIN_TB_NAME}_*/events.out.tfevents.*")):
        points = [(event.wall_time, value.simple_value) for event in LegacyEventFileLoader(str(events_file)).Load()
                  for value in event.summary.value if value.tag == "time/fps"]
        if points:
            found = True
            (first_wall, first_fps), (last_wall, _) = points[0], points[-1]
            total += last_wall - first_wall + (rollout_steps / first_fps if first_fps > 0 else 0.0)
    return total if found else None
