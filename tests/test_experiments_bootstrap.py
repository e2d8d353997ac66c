"""agents.experiments.bootstrap gives rliable's own CIs (same draws, vectorized) on fixed arrays."""
import warnings

import numpy as np
import pytest
from rliable import library, metrics

from agents.experiments import bootstrap

X = np.array([[0.9, 0.4, 0.7], [0.8, 0.5, 0.6], [0.7, 0.45, 0.9], [0.95, 0.3, 0.8]])
Y = np.array([[0.1, 0.5, 0.6], [0.95, 0.2, 0.3], [0.2, 0.4, 0.7]])


def _rliable(call, seed):
    """Run an rliable call with numpy's global RNG (where its bootstrap draws from) seeded."""
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return call()


def test_aggregate_cis_equal_rliables():
    def four(s):
        return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s), metrics.aggregate_median(s),
                         metrics.aggregate_optimality_gap(s, 1.0)])

    _, cis = _rliable(lambda: library.get_interval_estimates({"x": X}, four, reps=400), seed=3)
    mine = bootstrap.aggregate_cis(X, ["iqm", "mean", "median", "optimality_gap"], reps=400, seed=3)
    for i, name in enumerate(["iqm", "mean", "median", "optimality_gap"]):
        assert mine[name] == pytest.approx((cis["x"][0][i], cis["x"][1][i]), abs=1e-12), name
    assert mine["iqm"][0] < mine["iqm"][1]


def test_probability_of_improvement_ci_equals_rliables_with_unequal_run_counts():
    _, cis = _rliable(lambda: library.get_interval_estimates({"xy": (X, Y)}, metrics.probability_of_improvement,
                                                             reps=300), seed=5)
    assert bootstrap.improvement_ci(X, Y, reps=300, seed=5) == pytest.approx(tuple(np.ravel(cis["xy"])), abs=1e-12)


def test_profile_and_curve_cis_equal_rliables():
    taus = np.linspace(0.0, 1.0, 11)
    _, cis = _rliable(lambda: library.create_performance_profile({"x": X}, taus, reps=300), seed=7)
    assert np.allclose(np.stack(bootstrap.profile_cis(X, taus, reps=300, seed=7)), cis["x"])
    values = np.random.default_rng(0).random((5, 6))  # 5 runs x 6 points of a learning curve

    def per_point(s):
        return np.array([metrics.aggregate_iqm(s[..., j]) for j in range(s.shape[-1])])

    _, cis = _rliable(lambda: library.get_interval_estimates({"x": values[:, None, :]}, per_point, reps=300), seed=2)
    assert np.allclose(np.stack(bootstrap.curve_cis(values, reps=300, seed=2)), cis["x"])


def test_the_global_rng_is_restored_and_a_seed_reproduces_the_ci():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    first = bootstrap.aggregate_cis(X, ["iqm"], reps=200, seed=1)
    assert np.random.random() == expected  # the caller's global stream is untouched
    assert bootstrap.aggregate_cis(X, ["iqm"], reps=200, seed=1) == first
    assert bootstrap.aggregate_cis(X, ["iqm"], reps=200, seed=2) != first
