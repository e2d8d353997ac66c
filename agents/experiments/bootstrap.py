"""Bootstrap CIs over runs, vectorized over the resamples, with runs drawn jointly across settings.

**What is resampled.** The unit of replication is a trained run (a seed). A score matrix
``[runs, tasks]`` holds, for one group, each run's score on each of the group's settings (e.g. every
shift at level 2). Every setting is scored by the same trained networks, so a run that is good is good
everywhere: the settings are not independent strata. Each resample therefore draws run indices ONCE
(``np.random.choice(runs, runs)``) and uses them for every setting of the group ("joint" resampling).
rliable's stratified bootstrap draws runs independently per task, which averages the run-to-run
variation away and gives pooled CIs that are too narrow when scores move together across settings
(perfectly correlated settings: a pooled CI as wide as one setting's with joint draws, about
``1/sqrt(tasks)`` as wide with independent draws). Different envs are different trained runs and are
never pooled in one matrix, so each env is its own stratum.

For a group of one setting the draws are rliable's exactly (the same calls on numpy's global RNG,
seeded with ``seed`` and restored afterwards), so single-setting CIs equal rliable's
``get_interval_estimates``; the tests check it. Two-sample statistics (probability of improvement,
the IQM difference) draw the runs of X, then of Y, in every resample, as rliable's
``StratifiedIndependentBootstrap`` does. CIs are percentile intervals (2.5 and 97.5).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from scipy.stats import trim_mean

CONFIDENCE = 0.95


@contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the body (rliable draws from it), then restore its state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def resample(arrays: list[np.ndarray], reps: int, seed: int) -> list[np.ndarray]:
    """``reps`` joint resamples of the runs of each array ``[runs, tasks, ...]`` (``[reps, runs, tasks, ...]``).

    In every resample the arrays are drawn in order, each with ``np.random.choice(runs, runs)``, and a
    drawn run keeps all its tasks: whole rows are resampled.
    """
    with seeded_global_numpy(seed):
        draws = [[np.random.choice(a.shape[0], a.shape[0], replace=True) for a in arrays] for _ in range(reps)]
    return [a[np.stack([d[k] for d in draws])] for k, a in enumerate(arrays)]


def percentile_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI over the resamples (axis 0) of ``values [reps, ...]``."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return low, high


def iqm(resampled: np.ndarray) -> np.ndarray:
    """rliable's ``aggregate_iqm`` (25% trimmed mean of all scores) of each resample ``[reps, runs, tasks]``."""
    return trim_mean(resampled.reshape(len(resampled), -1), proportiontocut=0.25, axis=1)


def mean(resampled: np.ndarray) -> np.ndarray:
    """rliable's ``aggregate_mean`` (mean over tasks of the mean over runs) of each resample."""
    return resampled.mean(axis=1).mean(axis=1)


def median(resampled: np.ndarray) -> np.ndarray:
    """The median over runs of each run's mean over the tasks, of each resample ``[reps, runs, tasks]``.

    For one task it is the median over runs (seeds). rliable's ``aggregate_median`` is instead the
    median over tasks of the per-task means, which for one task is the mean.
    """
    return np.median(resampled.mean(axis=2), axis=1)


def optimality_gap(resampled: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """rliable's ``aggregate_optimality_gap``: mean shortfall below ``gamma`` of each resample."""
    return (gamma - np.minimum(resampled, gamma)).reshape(len(resampled), -1).mean(axis=1)


AGGREGATE_STATS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": iqm, "mean": mean, "median": median, "optimality_gap": optimality_gap,
}


def point_estimate(name: str, scores: np.ndarray) -> float:
    """The aggregate ``name`` of ``scores [runs, tasks]`` (the same function as its bootstrap)."""
    return float(AGGREGATE_STATS[name](scores[None])[0])


def aggregate_cis(scores: np.ndarray, names: list[str], reps: int, seed: int) -> dict[str, tuple[float, float]]:
    """95% CIs of the named aggregates of ``scores [runs, tasks]`` (one set of joint resamples for all)."""
    (res,) = resample([scores], reps, seed)
    values = np.stack([AGGREGATE_STATS[name](res) for name in names], axis=1)
    low, high = percentile_ci(values)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(names)}


def improvement_probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's probability of improvement per resample of ``x [reps, nx, tasks]`` over ``y [reps, ny, tasks]``:
    wins + ties / 2 over all (x run, y run) pairs of a task (Mann-Whitney U / (nx ny)), mean over tasks."""
    xs, ys = x[:, :, None, :], y[:, None, :, :]
    return ((xs > ys) + 0.5 * (xs == ys)).mean(axis=(1, 2)).mean(axis=1)


def improvement_cis(x: np.ndarray, y: np.ndarray, reps: int,
                    seed: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% CIs of the probability of improvement of ``x [nx, tasks]`` over ``y [ny, tasks]`` and of the IQM
    difference ``IQM(x) - IQM(y)``, both from the same joint resamples."""
    rx, ry = resample([x, y], reps, seed)
    p_low, p_high = percentile_ci(improvement_probability(rx, ry))
    d_low, d_high = percentile_ci(iqm(rx) - iqm(ry))
    return (float(p_low), float(p_high)), (float(d_low), float(d_high))


def improvement_ci(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """95% CI of the probability of improvement of ``x [nx, tasks]`` over ``y [ny, tasks]``."""
    return improvement_cis(x, y, reps, seed)[0]


def profile_cis(scores: np.ndarray, taus: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% CIs of the performance profile (share of scores > tau) of ``scores [runs, tasks]`` per tau."""
    (res,) = resample([scores], reps, seed)
    flat = res.reshape(len(res), -1)
    return percentile_ci((flat[:, :, None] > taus[None, None, :]).mean(axis=1))


def curve_cis(values: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% CIs of the IQM across runs at each point of ``values [runs, points]`` (whole curves resampled;
    each point's CI has the same distribution as with per-point draws, and the band is one set of runs)."""
    (res,) = resample([values], reps, seed)
    return percentile_ci(trim_mean(res, proportiontocut=0.25, axis=1))
