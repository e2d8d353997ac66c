"""agents.experiments.bootstrap: runs resampled jointly across settings; rliable's numbers for one setting."""
import warnings

import numpy as np
import pytest
from rliable import library, metrics
from scipy.stats import trim_mean

from agents.experiments import bootstrap

X = np.array([[0.9, 0.4, 0.7], [0.8, 0.5, 0.6], [0.7, 0.45, 0.9], [0.95, 0.3, 0.8]])
Y = np.array([[0.1, 0.5, 0.6], [0.95, 0.2, 0.3], [0.2, 0.4, 0.7]])


def _rliable(call, seed):
    """Run an rliable call with numpy's global RNG (where its bootstrap draws from) seeded."""
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return call()


def _joint_by_loop(arrays, statistic, reps, seed):
    """The joint bootstrap written as a plain loop: per resample, one draw of run indices per array, whole rows."""
    rng_state = np.random.get_state()
    np.random.seed(seed)
    values = []
    for _ in range(reps):
        draws = [a[np.random.choice(a.shape[0], a.shape[0], replace=True)] for a in arrays]
        values.append(statistic(*draws))
    np.random.set_state(rng_state)
    return np.percentile(np.array(values), [2.5, 97.5], axis=0)


@pytest.mark.parametrize("task", [0, 1, 2])
def test_one_setting_gives_rliables_cis(task):
    single = X[:, task:task + 1]

    def three(s):
        return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s),
                         metrics.aggregate_optimality_gap(s, 1.0)])

    _, cis = _rliable(lambda: library.get_interval_estimates({"x": single}, three, reps=400), seed=3)
    mine = bootstrap.aggregate_cis(single, ["iqm", "mean", "optimality_gap"], reps=400, seed=3)
    for i, name in enumerate(["iqm", "mean", "optimality_gap"]):
        assert mine[name] == pytest.approx((cis["x"][0][i], cis["x"][1][i]), abs=1e-12), name
    _, cis = _rliable(lambda: library.get_interval_estimates({"xy": (single, Y[:, task:task + 1])},
                                                             metrics.probability_of_improvement, reps=300), seed=5)
    assert bootstrap.improvement_ci(single, Y[:, task:task + 1], reps=300, seed=5) == pytest.approx(
        tuple(np.ravel(cis["xy"])), abs=1e-12)
    taus = np.linspace(0.0, 1.0, 11)
    _, cis = _rliable(lambda: library.create_performance_profile({"x": single}, taus, reps=300), seed=7)
    assert np.allclose(np.stack(bootstrap.profile_cis(single, taus, reps=300, seed=7)), cis["x"])


def test_several_settings_resample_whole_runs():
    def iqm_mean_median(s):
        return np.array([trim_mean(s.ravel(), 0.25), s.mean(), np.median(s.mean(axis=1))])

    expected = _joint_by_loop([X], iqm_mean_median, reps=300, seed=4)
    mine = bootstrap.aggregate_cis(X, ["iqm", "mean", "median"], reps=300, seed=4)
    for i, name in enumerate(["iqm", "mean", "median"]):
        assert mine[name] == pytest.approx(tuple(expected[:, i]), abs=1e-12), name

    def poi_and_difference(x, y):
        p = np.mean((x[:, None, :] > y[None, :, :]) + 0.5 * (x[:, None, :] == y[None, :, :]))
        return np.array([p, trim_mean(x.ravel(), 0.25) - trim_mean(y.ravel(), 0.25)])

    expected = _joint_by_loop([X, Y], poi_and_difference, reps=300, seed=6)
    (p_ci, d_ci) = bootstrap.improvement_cis(X, Y, reps=300, seed=6)
    assert p_ci == pytest.approx(tuple(expected[:, 0]), abs=1e-12)
    assert d_ci == pytest.approx(tuple(expected[:, 1]), abs=1e-12)

    taus = np.linspace(0.0, 1.0, 6)
    expected = _joint_by_loop([X], lambda s: (s.ravel()[:, None] > taus[None]).mean(axis=0), reps=200, seed=8)
    assert np.allclose(np.stack(bootstrap.profile_cis(X, taus, reps=200, seed=8)), expected)
    curves = np.random.default_rng(0).random((5, 6))  # 5 runs x 6 points of a learning curve
    expected = _joint_by_loop([curves], lambda s: trim_mean(s, 0.25, axis=0), reps=200, seed=2)
    assert np.allclose(np.stack(bootstrap.curve_cis(curves, reps=200, seed=2)), expected)


def test_perfectly_correlated_settings_give_a_pooled_ci_as_wide_as_one_settings():
    runs = np.array([[0.1], [0.3], [0.5], [0.6], [0.9], [0.95]])  # 6 seeds, one setting
    pooled = np.repeat(runs, 4, axis=1)  # four settings that every run scores the same
    one = bootstrap.aggregate_cis(runs, ["mean", "median"], reps=1000, seed=0)
    four = bootstrap.aggregate_cis(pooled, ["mean", "median"], reps=1000, seed=0)
    for name in ("mean", "median"):
        assert four[name] == pytest.approx(one[name], abs=1e-12), name
    # rliable's stratified bootstrap redraws the runs per setting and makes the same data look 4x surer
    _, cis = _rliable(lambda: library.get_interval_estimates({"x": pooled}, metrics.aggregate_mean, reps=1000),
                      seed=0)
    independent_width = float(np.ravel(cis["x"])[1] - np.ravel(cis["x"])[0])
    joint_width = four["mean"][1] - four["mean"][0]
    assert independent_width < 0.7 * joint_width
    low, high = bootstrap.improvement_ci(pooled, 1 - pooled, reps=500, seed=1)
    assert (low, high) == pytest.approx(bootstrap.improvement_ci(runs, 1 - runs, reps=500, seed=1), abs=1e-12)


def test_median_is_the_median_over_runs_of_their_mean_over_settings():
    scores = np.array([[0.0, 0.2], [0.2, 0.2], [1.0, 0.8]])  # run means 0.1, 0.2, 0.9
    assert bootstrap.point_estimate("median", scores) == pytest.approx(0.2)
    assert bootstrap.point_estimate("mean", scores) == pytest.approx(0.4)
    assert bootstrap.point_estimate("median", np.array([[0.1], [0.3], [0.95]])) == pytest.approx(0.3)


def test_a_known_difference_and_its_ci():
    x = np.full((4, 2), 0.9)
    y = np.full((5, 2), 0.4)
    p_ci, d_ci = bootstrap.improvement_cis(x, y, reps=200, seed=0)
    assert p_ci == (1.0, 1.0) and d_ci == pytest.approx((0.5, 0.5))
    spread = np.array([[0.9, 0.8], [0.1, 0.2], [0.5, 0.5]])
    _, d_ci = bootstrap.improvement_cis(spread, spread, reps=500, seed=0)
    assert d_ci[0] < 0 < d_ci[1]  # the same runs against themselves: a CI around 0


def test_the_global_rng_is_restored_and_a_seed_reproduces_the_ci():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    first = bootstrap.aggregate_cis(X, ["iqm"], reps=200, seed=1)
    assert np.random.random() == expected  # the caller's global stream is untouched
    assert bootstrap.aggregate_cis(X, ["iqm"], reps=200, seed=1) == first
    assert bootstrap.aggregate_cis(X, ["iqm"], reps=200, seed=2) != first
