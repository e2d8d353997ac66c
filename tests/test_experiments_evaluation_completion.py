"""An evaluation that hits 0% or 100% never crashes, a plot never fails an evaluation, and a run whose
evaluation did not finish is evaluated again by the next ``sweep --evaluate``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agents.experiments.evaluation.episodes import Episode
from agents.experiments.evaluation.ladder import Setting
from agents.experiments.evaluation.metrics import summarize, t_interval, wilson_interval
from agents.experiments.plots import plot_returns_vs_level
from agents.experiments.runs import EVAL_DIR
from agents.experiments.sweep.grid import Grid, plan_sweep

LADDER = "distractors=1"  # the tiny run's eval.sweep: two settings (unshifted, distractors 1)


def test_every_wilson_interval_holds_its_rate_at_0_and_n_up_to_1000():
    for n in range(1, 1001):
        low, high = wilson_interval(0, n)
        assert low == 0.0 and 0.0 < high <= 1.0, n
        low, high = wilson_interval(n, n)
        assert 0.0 <= low < 1.0 and high == 1.0, n
    for n in (1, 2, 7, 10, 400, 999):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n)


@pytest.mark.parametrize("value", [0.0, 0.1, 0.9, 1.0, -21.0, 1e-9, 123.456])
def test_the_t_interval_of_returns_holds_its_mean(value):
    for n in (1, 2, 3, 10, 97, 400):
        mean, _, low, high = t_interval(np.full(n, value))
        assert low <= mean <= high, (value, n)
    rng = np.random.default_rng(0)
    for n in (2, 5, 50):
        mean, _, low, high = t_interval(rng.normal(0.3, 1e-12, n))
        assert low <= mean <= high


@pytest.mark.parametrize("n", [4, 10, 14, 19, 24, 500])
def test_a_ladder_where_every_episode_succeeds_or_fails_is_plotted(n, tmp_path):
    rows = []
    for setting, success in ((Setting("none", 0), True), (Setting("distractors", 1, {"distractors": 1}), False)):
        eps = [Episode(i, 1000 + i, float(success) * 0.9, success, 10) for i in range(n)]
        rows.append(summarize("RedBallDistractors-v0", setting, eps))
    assert rows[0].success_ci95_high == 1.0 and rows[1].success_ci95_low == 0.0
    assert plot_returns_vs_level(rows, tmp_path / "returns.png", "all or nothing").is_file()


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, tiny_config, run_main):
    """A tiny lstm run trained where ``sweep`` puts it, with a two-setting ladder; (logdir, run dir, grid)."""
    root = tmp_path_factory.mktemp("sweep_run")
    cfg = tiny_config(root, eval={"sweep": LADDER, "episodes": 2})
    logdir = root / "runs"
    assert run_main(["train", "--config", cfg, "--core", "lstm", "--logdir", logdir, "--timesteps", 32,
                     "--no-progress"]) == 0
    (run,) = logdir.glob("*/lstm/seed0")
    return logdir, run, Grid(config=str(cfg), cores=["lstm"], timesteps=32)


def _needs_evaluation(sweep_run) -> bool:
    logdir, run, grid = sweep_run
    (planned,) = plan_sweep(grid, logdir, evaluate=True)
    assert planned.state == "done"
    return planned.evaluate


def _evaluate(run):
    from agents.experiments.evaluation.evaluate import evaluate_run

    return evaluate_run(run, shifts=LADDER, episodes=2, quiet=True)  # what a sweep's task runs


@pytest.mark.parametrize("broken", ["plot", "TensorBoard image"])
def test_a_plot_failure_is_one_warning_and_the_evaluation_is_complete(broken, sweep_run, monkeypatch, capsys,
                                                                     run_main):
    import agents.experiments.evaluation.evaluate as evaluate

    def fails(*args, **kwargs):
        raise ValueError("'yerr' must not contain negative values")

    if broken == "plot":
        monkeypatch.setattr(evaluate, "plot_returns_vs_level", fails)
    else:
        monkeypatch.setattr(evaluate.iio, "imread", fails)  # reading returns.png back for TensorBoard
    _, run, _ = sweep_run
    for name in ("results.json", "results.csv", "returns.png"):
        (run / EVAL_DIR / name).unlink(missing_ok=True)
    assert run_main(["evaluate", "--model", run, "--shifts", LADDER, "--episodes", 2]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "yerr" in err[0], err
    assert ("returns.png was not drawn" if broken == "plot" else "ladder image was not logged") in err[0]
    data = json.loads((run / EVAL_DIR / "results.json").read_text())
    assert [(r["shift"], r["level"], r["episodes"]) for r in data["results"]] == [("none", 0, 2), ("distractors", 1, 2)]
    assert len((run / EVAL_DIR / "results.csv").read_text().splitlines()) == 3
    assert (run / EVAL_DIR / "returns.png").exists() == (broken != "plot")
    assert not _needs_evaluation(sweep_run)


def test_a_failed_evaluation_is_evaluated_again_by_the_next_sweep(sweep_run, monkeypatch):
    import agents.experiments.evaluation.evaluate as evaluate

    _, run, _ = sweep_run
    results = run / EVAL_DIR / "results.json"
    results.unlink(missing_ok=True)
    assert _needs_evaluation(sweep_run)

    def tensorboard_fails(*args, **kwargs):
        raise RuntimeError("TensorBoard failed")

    monkeypatch.setattr(evaluate, "log_results_to_tensorboard", tensorboard_fails)
    with pytest.raises(RuntimeError):  # in a sweep: Ray retries, then the run is marked failed
        _evaluate(run)
    assert not results.exists()  # results.json is written last: nothing marks the evaluation as finished
    assert _needs_evaluation(sweep_run)  # so the next `sweep --evaluate` evaluates it again
    monkeypatch.undo()
    _evaluate(run)
    assert not _needs_evaluation(sweep_run)


@pytest.mark.parametrize("damage", ["setting missing", "fewer episodes", "other episode count"])
def test_an_incomplete_results_file_is_no_finished_evaluation(damage, sweep_run):
    _, run, _ = sweep_run
    _evaluate(run)
    assert not _needs_evaluation(sweep_run)
    path = run / EVAL_DIR / "results.json"
    data = json.loads(path.read_text())
    if damage == "setting missing":
        data["results"] = data["results"][:1]
    elif damage == "fewer episodes":
        data["results"][1]["episodes"] = 1
    else:
        data["episodes"] = 3
    path.write_text(json.dumps(data))
    assert _needs_evaluation(sweep_run)
