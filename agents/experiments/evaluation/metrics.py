"""Per-setting statistics of paired episodes: return CI, success rate with its Wilson CI, normalized score."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from agents.experiments.evaluation.episodes import Episode
from agents.experiments.evaluation.ladder import UNSHIFTED, Setting
from agents.experiments.evaluation.results import Result

METRICS = ("mean_return", "success_rate", "normalized_score")  # logged per setting (TensorBoard)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate ``successes / n``; it always holds ``successes / n``.

    At 0 or ``n`` successes the formula's bound is 0 or 1 only up to rounding (10/10 gave an upper
    bound of 0.9999999999999999, a negative error bar that matplotlib refuses), so the bounds are
    clamped to the point estimate and to [0, 1].
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std and the Student-t 95% CI ``(low, high)`` of the mean of ``values``; the CI always
    holds the mean (a single value: the CI is the value itself)."""
    n = len(values)
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else 0.0
    return mean, std, min(mean, mean - half), max(mean, mean + half)


def summarize(env_id: str, setting: Setting, episodes: Sequence[Episode]) -> Result:
    """Mean, sample std and Student-t 95% CI of the returns; success rate with its Wilson CI; mean length."""
    returns = np.array([e.ret for e in episodes], dtype=np.float64)
    n = len(returns)
    mean, std, low, high = t_interval(returns)
    result = Result(env_id, setting.shift, setting.level, n, mean, std, low, high,
                    mean_length=float(np.mean([e.length for e in episodes])),
                    episode_records=[e.record() for e in episodes])
    flags = [e.success for e in episodes]
    if all(f is not None for f in flags):
        wins = int(sum(bool(f) for f in flags))
        result.success_rate = wins / n
        result.success_ci95_low, result.success_ci95_high = wilson_interval(wins, n)
    return result


def normalized_score(mean: float, random_mean: float, unshifted: float, random_unshifted: float) -> float | None:
    """``(mean - random_mean) / (unshifted - random_unshifted)``; None unless the model beats chance unshifted."""
    scale = unshifted - random_unshifted
    if not scale > 0:
        return None
    return (mean - random_mean) / scale


def add_normalized_scores(results: list[Result]) -> None:
    """Set each result's ``normalized_score`` from its ``random_return`` and the unshifted row's."""
    base = next(r for r in results if r.shift == UNSHIFTED)
    for r in results:
        if r.random_return is None or base.random_return is None:
            r.normalized_score = None
        else:
            r.normalized_score = normalized_score(r.mean_return, r.random_return, base.mean_return,
                                                  base.random_return)


def success_ci_half_width(results: Sequence[Result]) -> float | None:
    """The largest half-width of the success-rate CIs of ``results`` (None without success)."""
    widths = [(r.success_ci95_high - r.success_ci95_low) / 2 for r in results if r.success_rate is not None]
    return max(widths) if widths else None
