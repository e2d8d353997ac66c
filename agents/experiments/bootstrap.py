"""rliable's stratified bootstrap, vectorized over the resamples (same draws, same numbers, ~100x faster).

rliable (``rliable.library.get_interval_estimates``) resamples the runs of a score matrix
``[runs, tasks, ...]`` independently within each task, once per resample with
``np.random.choice(runs, shape)`` from numpy's global RNG, calls the statistic in a Python loop
and takes percentile CIs (``np.percentile``, 2.5 and 97.5). Its probability of improvement
resamples the runs of X and then of Y in every resample (``StratifiedIndependentBootstrap``).
This module draws exactly the same indices in the same order (global RNG seeded with ``seed``,
its state restored afterwards), evaluates the statistics of all resamples at once with numpy,
and takes the same percentiles; tests check the numbers against rliable's on fixed arrays. The
point estimates are rliable's own ``metrics`` functions (in compare.py).
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
    """``reps`` stratified resamples of each array ``[runs, tasks, ...]`` (``[reps, runs, tasks, ...]``).

    In every resample the arrays are drawn in order, each with ``np.random.choice(runs, shape)``:
    rliable's draws for one array (StratifiedBootstrap) or a pair (StratifiedIndependentBootstrap).
    """
    with seeded_global_numpy(seed):
        draws = [[np.random.choice(a.shape[0], a.shape, replace=True) for a in arrays] for _ in range(reps)]
    out = []
    for k, a in enumerate(arrays):
        index = np.stack([d[k] for d in draws])  # [reps, runs, tasks, ...]
        out.append(np.take_along_axis(np.broadcast_to(a, index.shape), index, axis=1))
    return out


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
    """rliable's ``aggregate_median`` (median over tasks of the mean over runs) of each resample."""
    return np.median(resampled.mean(axis=1), axis=1)


def optimality_gap(resampled: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """rliable's ``aggregate_optimality_gap``: mean shortfall below ``gamma`` of each resample."""
    return (gamma - np.minimum(resampled, gamma)).reshape(len(resampled), -1).mean(axis=1)


AGGREGATE_STATS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": iqm, "mean": mean, "median": median, "optimality_gap": optimality_gap,
}


def aggregate_cis(scores: np.ndarray, names: list[str], reps: int, seed: int) -> dict[str, tuple[float, float]]:
    """95% CIs of the named aggregates of ``scores [runs, tasks]`` (one set of resamples for all)."""
    (res,) = resample([scores], reps, seed)
    values = np.stack([AGGREGATE_STATS[name](res) for name in names], axis=1)
    low, high = percentile_ci(values)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(names)}


def improvement_probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's probability of improvement per resample of ``x [reps, nx, tasks]`` over ``y [reps, ny, tasks]``:
    wins + ties / 2 over all (x run, y run) pairs of a task (Mann-Whitney U / (nx ny)), mean over tasks."""
    xs, ys = x[:, :, None, :], y[:, None, :, :]
    return ((xs > ys) + 0.5 * (xs == ys)).mean(axis=(1, 2)).mean(axis=1)


def improvement_ci(x: np.ndarray, y: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """95% CI of the probability of improvement of ``x [nx, tasks]`` over ``y [ny, tasks]``."""
    rx, ry = resample([x, y], reps, seed)
    low, high = percentile_ci(improvement_probability(rx, ry))
    return float(low), float(high)


def profile_cis(scores: np.ndarray, taus: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% CIs of the performance profile (share of scores > tau) of ``scores [runs, tasks]`` per tau."""
    (res,) = resample([scores], reps, seed)
    flat = res.reshape(len(res), -1)
    return percentile_ci((flat[:, :, None] > taus[None, None, :]).mean(axis=1))


def curve_cis(values: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% CIs of the IQM across runs at each point of ``values [runs, points]`` (each point its own
    stratum, as rliable's sample-efficiency curves over ``[runs, 1, points]``)."""
    (res,) = resample([values[:, None, :]], reps, seed)
    return percentile_ci(trim_mean(res[:, :, 0, :], proportiontocut=0.25, axis=1))
