"""How often the report's 95% CIs hold the truth with few runs: coverage on populations with known values.

    python benchmarks/bench_coverage.py            # 1,000 simulated studies per cell, 2,000 resamples each
    python benchmarks/bench_coverage.py --quick    # a smoke run

Each simulated study draws N runs' success rates from a population whose true IQM and mean are known
(computed on 10^6 draws), computes the CIs exactly as `rims-rl compare` does
(`agents.experiments.bootstrap`: percentile bootstrap over runs), and records whether they hold the
truth. For the probability of improvement, two labels draw from the same population (true P = 0.5):
the share of studies whose CI excludes 0.5 is the false-positive rate a reader should expect per
comparison. Populations:

- ``steady``: every run learns, Beta(40, 8) (mean 0.83);
- ``some fail``: 70% of runs as above, 30% stuck near chance, Beta(6, 10) (the pilot's rims on pickup).

A second table pools 4 settings scored by the same runs (a run's skill carries into every setting,
shifts lower it by 0, 0.05, 0.1 and 0.2, plus noise per run and setting), as "all shifts at level L"
does: the IQM's CI with runs drawn jointly across the settings (what compare does) against settings
drawn independently (rliable's stratified bootstrap, which treats the settings as separate tasks).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.experiments.bootstrap import aggregate_cis, improvement_ci, iqm, percentile_ci  # noqa: E402


def steady(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.beta(40, 8, n)


def some_fail(rng: np.random.Generator, n: int) -> np.ndarray:
    fails = rng.random(n) < 0.3
    return np.where(fails, rng.beta(6, 10, n), rng.beta(40, 8, n))


POPULATIONS = {"steady": steady, "some fail": some_fail}


def coverage(draw, n_runs: int, studies: int, reps: int, seed: int) -> dict[str, float]:
    """Shares of ``studies`` simulated studies of ``n_runs`` runs whose CI holds the truth (IQM, mean), and
    whose P(improvement) CI between two draws of the same population excludes 0.5."""
    rng = np.random.default_rng(seed)
    big = draw(np.random.default_rng(seed + 1), 1_000_000)
    truth = {"iqm": float(trim_mean(big, 0.25)), "mean": float(big.mean())}
    held = {"iqm": 0, "mean": 0}
    false_positive = 0
    for i in range(studies):
        scores = draw(rng, n_runs)[:, None]
        cis = aggregate_cis(scores, ["iqm", "mean"], reps, seed=i)
        for name in held:
            low, high = cis[name]
            held[name] += low <= truth[name] <= high
        low, high = improvement_ci(scores, draw(rng, n_runs)[:, None], reps, seed=i)
        false_positive += low > 0.5 or high < 0.5
    return {"iqm": held["iqm"] / studies, "mean": held["mean"] / studies, "p_excludes_half": false_positive / studies}


SHIFT_COSTS = np.array([0.0, 0.05, 0.1, 0.2])


def pooled_settings(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n runs, 4 settings]``: each run's skill (``some fail``) lowered by each setting's shift, with noise."""
    skill = some_fail(rng, n)[:, None]
    return np.clip(skill - SHIFT_COSTS + rng.normal(0.0, 0.03, (n, SHIFT_COSTS.size)), 0.0, 1.0)


def independent_iqm_ci(scores: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """The IQM's 95% CI with the runs of each setting drawn independently (rliable's stratified bootstrap)."""
    rng = np.random.default_rng(seed)
    runs, settings = scores.shape
    idx = rng.integers(0, runs, size=(reps, runs, settings))
    low, high = percentile_ci(iqm(scores[idx, np.arange(settings)]))
    return float(low), float(high)


def pooled_coverage(n_runs: int, studies: int, reps: int, seed: int) -> dict[str, float]:
    """Coverage and mean width of the pooled IQM's CI, runs drawn jointly against settings independently."""
    rng = np.random.default_rng(seed)
    truth = float(trim_mean(pooled_settings(np.random.default_rng(seed + 1), 250_000).ravel(), 0.25))
    held = {"joint": 0, "independent": 0}
    width = {"joint": 0.0, "independent": 0.0}
    for i in range(studies):
        scores = pooled_settings(rng, n_runs)
        cis = {"joint": aggregate_cis(scores, ["iqm"], reps, seed=i)["iqm"],
               "independent": independent_iqm_ci(scores, reps, seed=i)}
        for name, (low, high) in cis.items():
            held[name] += low <= truth <= high
            width[name] += (high - low) / studies
    return {**{f"{k}_held": v / studies for k, v in held.items()}, **{f"{k}_width": v for k, v in width.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[3, 5, 10, 20])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="100 studies of 200 resamples")
    args = parser.parse_args()
    studies, reps = (100, 200) if args.quick else (args.studies, args.reps)
    print(f"{studies} simulated studies per cell, {reps} bootstrap resamples each; nominal coverage 0.95, "
          f"nominal false-positive rate of P(improvement) 0.05")
    print("| population | runs | IQM CI holds the truth | mean CI holds the truth "
          "| P CI excludes 0.5 (no true difference) |")
    print("|---|---|---|---|---|")
    for name, draw in POPULATIONS.items():
        for n in args.runs:
            c = coverage(draw, n, studies, reps, seed=n)
            print(f"| {name} | {n} | {c['iqm']:.3f} | {c['mean']:.3f} | {c['p_excludes_half']:.3f} |", flush=True)
    print("\nPooled IQM over 4 settings scored by the same runs: share of CIs that hold the truth [mean width]")
    print("| runs | runs drawn jointly (compare) | settings drawn independently (rliable) |")
    print("|---|---|---|")
    for n in args.runs:
        c = pooled_coverage(n, studies, reps, seed=n)
        print(f"| {n} | {c['joint_held']:.3f} [{c['joint_width']:.3f}] | "
              f"{c['independent_held']:.3f} [{c['independent_width']:.3f}] |", flush=True)


if __name__ == "__main__":
    main()
