"""The tune driver on an in-process runner: equal budgets, interrupted tunes resumed without lost or
duplicated trials, tuning seeds, the outputs, the lock, a best config that trains."""
import csv

import optuna
import pytest
import yaml

from agents.experiments.evaluation.evaluate import evaluate_run
from agents.experiments.evaluation.tables import format_number
from agents.experiments.outcomes import Interrupted
from agents.experiments.sweep.grid import Grid, RunOutcome
from agents.experiments.train import train_run
from agents.experiments.tune import driver, storage
from rims_rl.errors import UserError

ENV = "RedBallDistractors-v0"


class InProcessSession:
    """The RunnerSession interface, training each run in this process when waited for (no Ray)."""

    def __init__(self, capacity=2, interrupt_after=None, **_):
        self.slots, self.pending, self.waits, self.interrupt_after = capacity, [], 0, interrupt_after
        self.submitted = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def running(self):
        return len(self.pending)

    def capacity(self):
        return self.slots

    def submit(self, run, evaluation=None):
        self.pending.append((run, evaluation))
        self.submitted.append(run.run_dir)

    def wait(self, timeout=0.5):
        self.waits += 1
        if self.interrupt_after is not None and self.waits > self.interrupt_after:
            raise Interrupted("SIGINT: stopped")
        run, evaluation = self.pending.pop(0)
        outcome = train_run(run.cfg, run.run_dir, resume=True, progress=False, device="cpu")
        if evaluation is not None:
            evaluate_run(run.run_dir, shifts=evaluation["shifts"], episodes=evaluation["episodes"], quiet=True)
        return [RunOutcome(run, "done", outcome.num_timesteps)]


@pytest.fixture
def setup(tmp_path, tiny_config):
    config = tiny_config(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("ppo.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
                     "ppo.lr_schedule: {choices: [constant, linear]}\ncores.rims.k: {low: 1, high: 2}\n")
    return Grid(config=str(config), cores=["rims", "lstm"]), space, tmp_path / "tune"


def _rows(logdir):
    with open(logdir / ENV / storage.TRIALS_FILE) as f:
        return list(csv.DictReader(f))


def test_every_label_gets_the_same_trials_on_tuning_seeds_and_writes_its_best_config(setup, capsys):
    grid, space, logdir = setup
    sessions = []
    targets = driver.tune(grid, logdir, trials=3, seeds_per_trial=2, space=space, episodes=4,
                          session_factory=lambda **kw: sessions.append(InProcessSession(**kw)) or sessions[-1])
    rows = _rows(logdir)
    assert sorted((r["label"], r["trial"]) for r in rows) == [(lab, str(i)) for lab in ("lstm", "rims") for i in range(3)]
    assert all(0.0 <= float(r["score"]) <= 1.0 and float(r["seconds"]) > 0 for r in rows)
    assert {r["core"] for r in rows} == {"rims", "lstm"}
    assert all(r["cores.rims.k"] == "" for r in rows if r["label"] == "lstm")  # a rims key: not searched for lstm
    seeds = {p.name for p in sessions[0].submitted}
    assert seeds == {"seed1000", "seed1001"}  # tuning seeds, never a reported seed 0-999
    assert {p.parent.name for p in sessions[0].submitted} == {f"{lab}-trial{i:03d}" for lab in ("rims", "lstm")
                                                              for i in range(3)}
    for target in targets:
        best = storage.best_trial(target.study)
        written = yaml.safe_load((logdir / ENV / f"best_{target.label}.yaml").read_text())
        assert written["core"] == target.label and written["seed"] == 0
        assert written["ppo"]["learning_rate"] == pytest.approx(best.params["ppo.learning_rate"])
    tuned = yaml.safe_load((logdir / ENV / storage.TUNED_FILE).read_text())
    assert set(tuned) == {"rims", "lstm"} and set(tuned["rims"]) == {"ppo.learning_rate", "ppo.lr_schedule",
                                                                    "cores.rims.k"}
    out = capsys.readouterr().out
    assert "trials left: rims 3, lstm 3" in out and "rims: 3 trials (0 failed), best" in out
    # a re-run with the budget spent trains nothing and starts no runner
    driver.tune(grid, logdir, trials=3, seeds_per_trial=2, space=space, episodes=4,
                session_factory=lambda **kw: pytest.fail("nothing is left to run"))


def test_an_interrupted_tune_resumes_without_lost_or_duplicated_trials(setup):
    grid, space, logdir = setup
    first = InProcessSession(interrupt_after=3)
    with pytest.raises(Interrupted):
        driver.tune(grid, logdir, trials=2, seeds_per_trial=2, space=space, episodes=4, session_factory=lambda **kw: first)
    states = {label: [t.state for t in optuna.load_study(study_name=f"{ENV}/{label}",
                                                         storage=storage.journal_storage(logdir / ENV)).trials]
              for label in ("rims", "lstm")}
    assert optuna.trial.TrialState.RUNNING not in [s for v in states.values() for s in v]  # none left RUNNING
    interrupted_dirs = set(first.submitted)
    second = InProcessSession()
    driver.tune(grid, logdir, trials=2, seeds_per_trial=2, space=space, episodes=4,
                session_factory=lambda **kw: second)
    rows = _rows(logdir)
    assert sorted(r["label"] for r in rows) == ["lstm", "lstm", "rims", "rims"]  # exactly the budget, no duplicate
    # the re-queued trials continued in the run dirs of the interrupted ones (resumed from their checkpoints)
    assert interrupted_dirs & set(second.submitted)
    keys = [r["trial"] for r in rows]
    assert len(set(zip((r["label"] for r in rows), keys))) == len(rows)


def test_a_second_tune_on_the_same_logdir_is_refused(setup):
    grid, space, logdir = setup
    with driver.lock_dirs([logdir / ENV]):
        with pytest.raises(UserError, match=r"is being tuned by another process \(pid \d+\)"):
            driver.tune(grid, logdir, trials=1, seeds_per_trial=1, space=space, episodes=2,
                        session_factory=InProcessSession)


@pytest.mark.parametrize("kwargs, message", [
    ({"trials": 0}, "--trials must be >= 1"),
    ({"seeds_per_trial": 0}, "--seeds-per-trial must be >= 1"),
    ({"episodes": 0}, "--episodes must be >= 1"),
])
def test_bad_budgets_are_refused_before_anything_is_written(setup, kwargs, message):
    grid, space, logdir = setup
    with pytest.raises(UserError, match=message):
        driver.tune(grid, logdir, **{"trials": 1, "seeds_per_trial": 1, "space": space, **kwargs},
                    session_factory=InProcessSession)
    assert not logdir.exists()


def test_a_bad_space_is_refused_before_anything_is_written(setup, tmp_path):
    grid, _, logdir = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo.learning_rate: {low: 1, high: 0}\n")
    with pytest.raises(UserError, match="low must be below high"):
        driver.tune(grid, logdir, trials=1, seeds_per_trial=1, space=bad, session_factory=InProcessSession)
    assert not logdir.exists()


def test_a_best_config_trains(setup, run_main, tmp_path):
    grid, space, logdir = setup
    driver.tune(Grid(config=grid.config, cores=["rims"]), logdir, trials=1, seeds_per_trial=1, space=space,
                episodes=2, session_factory=InProcessSession)
    best = logdir / ENV / "best_rims.yaml"
    assert run_main(["train", "--config", best, "--logdir", tmp_path / "fresh", "--no-progress"]) == 0
    assert (tmp_path / "fresh" / ENV / "rims" / "seed0" / "model.zip").is_file()


def test_the_tune_report_shows_best_values_sensitivity_and_progress(setup, run_main, capsys):
    grid, space, logdir = setup
    driver.tune(grid, logdir, trials=2, seeds_per_trial=1, space=space, episodes=2, session_factory=InProcessSession)
    capsys.readouterr()
    assert run_main(["report", logdir, "--out", logdir / "report"]) == 0
    assert "report:" in capsys.readouterr().out
    md = (logdir / "report" / "report.md").read_text()
    rows = _rows(logdir)
    for label in ("rims", "lstm"):
        best = max((r for r in rows if r["label"] == label), key=lambda r: (float(r["score"]), -int(r["trial"])))
        assert f"| {label} | {label} | 2 | 0 |" in md and format_number(float(best["ppo.learning_rate"])) in md
    for name in ("tune_sensitivity.png", "tune_progress.png"):
        assert (logdir / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (logdir / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<details>" in page


def test_tuning_seeds_below_1000_are_refused(setup):
    grid, space, logdir = setup
    with pytest.raises(UserError, match="--seed 5: tuning seeds must be >= 1000"):
        driver.tune(grid, logdir, trials=1, seeds_per_trial=1, space=space, first_seed=5,
                    session_factory=InProcessSession)
    assert not logdir.exists()


def test_sensitivity_plot_of_a_key_no_finished_trial_searched_draws_without_a_warning(tmp_path):
    import warnings

    from agents.experiments.tune.report import plot_sensitivity

    rows = [{"label": "lstm", "score": 0.5 + 0.1 * i, "ppo.learning_rate": 1e-4 * (i + 1), "cores.rims.k": ""}
            for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found" was printed to the user
        path = plot_sensitivity(rows, ["ppo.learning_rate", "cores.rims.k"], tmp_path / "s.png", "title")
    assert path.is_file() and path.stat().st_size > 1000


def _tuned(setup):
    """A finished tune of rims and lstm (2 trials each): its env dir."""
    grid, space, logdir = setup
    driver.tune(grid, logdir, trials=2, seeds_per_trial=1, space=space, episodes=2, session_factory=InProcessSession)
    return logdir / ENV


def test_a_sweep_takes_each_labels_tuned_values(setup, run_main, monkeypatch, tmp_path):
    from agents.experiments.sweep import driver as sweep_driver
    from agents.experiments.sweep.grid import plan_sweep

    env_dir = _tuned(setup)
    tuned = yaml.safe_load((env_dir / storage.TUNED_FILE).read_text())
    grids = []
    monkeypatch.setattr(sweep_driver, "sweep", lambda grid, **kwargs: grids.append(grid) or [])
    for given in (env_dir, env_dir / storage.TUNED_FILE):
        assert run_main(["sweep", "--config", setup[0].config, "--core", "rims", "lstm", "--seed", "0", "1",
                         "--set", "ppo.ent_coef=0.02", "--tuned", given, "--no-progress"]) == 0
    for grid in grids:
        plan = plan_sweep(grid, tmp_path / "runs")
        assert sorted((p.cfg["label"], p.cfg["seed"]) for p in plan) == [("lstm", 0), ("lstm", 1), ("rims", 0),
                                                                         ("rims", 1)]
        for p in plan:
            values = tuned[p.cfg["label"]]
            assert p.cfg["ppo"]["learning_rate"] == values["ppo.learning_rate"]  # verbatim, not rounded
            assert p.cfg["ppo"]["lr_schedule"] == values["ppo.lr_schedule"] and p.cfg["ppo"]["ent_coef"] == 0.02
        rims = next(p.cfg for p in plan if p.cfg["label"] == "rims")
        assert rims["cores"]["rims"]["k"] == tuned["rims"]["cores.rims.k"]


def test_tuned_values_are_refused_for_unequal_budgets_other_values_or_a_label_without_any(setup, refused, tmp_path):
    env_dir = _tuned(setup)
    config = setup[0].config

    def sweep(tuned, *more):
        return refused(["sweep", "--config", config, "--core", "rims", "lstm", *more, "--tuned", tuned,
                        "--logdir", tmp_path / "runs", "--no-progress"])

    assert f"no tuned values at {tmp_path / 'nope'}: no such file or directory" in sweep(tmp_path / "nope")
    assert f"no tuned.yaml in {env_dir.parent}; give one of its env dirs: {ENV}" in sweep(env_dir.parent)
    assert "--tuned has no values for label gru; its labels: rims, lstm" in sweep(env_dir, "--core", "rims",
                                                                                  "lstm", "gru")
    tuned = yaml.safe_load((env_dir / storage.TUNED_FILE).read_text())
    tuned["lstm"]["ppo.learning_rate"] *= 1.5  # not the value of lstm's best trial
    (env_dir / storage.TUNED_FILE).write_text(yaml.safe_dump(tuned))
    assert "lstm's values are not those of its best trial in trials.csv" in sweep(env_dir)
    lines = (env_dir / storage.TRIALS_FILE).read_text().splitlines()
    (env_dir / storage.TRIALS_FILE).write_text("\n".join(line for line in lines if not line.startswith("rims,rims,1,")))
    assert "unequal tuning budgets" in sweep(env_dir) and "rims 1, lstm 2 trials" in sweep(env_dir)
    assert not (tmp_path / "runs").exists()


def test_a_tune_of_some_labels_of_a_journal_is_refused_so_its_outputs_keep_every_label(setup):
    grid, space, logdir = setup
    _tuned(setup)
    with pytest.raises(UserError, match="also holds the tuning of lstm: tune every label of it together"):
        driver.tune(Grid(config=grid.config, cores=["rims"]), logdir, trials=3, seeds_per_trial=1, space=space,
                    episodes=2, session_factory=lambda **kw: pytest.fail("nothing may run"))
    assert {r["label"] for r in _rows(logdir)} == {"rims", "lstm"}


def test_tuned_values_of_picked_labels_only_and_a_matched_label_sized_against_the_tuned_rims(setup, tmp_path):
    from agents.experiments.sweep.grid import Variant, merge_grid, plan_sweep, read_grid_file, tuned_overrides
    from agents.experiments.tune.tuned import read_tuned

    grid, space, logdir = setup
    driver.tune(Grid(config=grid.config, variants=[Variant("rims", "rims"), Variant("lstm-m", "lstm", ["match=params"])]),
                logdir, trials=1, seeds_per_trial=1, space=space, episodes=2, session_factory=InProcessSession)
    tuned = read_tuned(logdir / ENV)
    grid_file = tmp_path / "study.yaml"  # gru and broken were never tuned; broken's config does not exist
    grid_file.write_text(yaml.safe_dump({"config": str(grid.config), "cores": ["gru"], "labels": {
        "rims": {"core": "rims"}, "lstm-m": {"core": "lstm", "set": {"match": "params"}},
        "broken": {"core": "lstm", "config": "nosuch.yaml"}}}))

    def planned(*labels):
        study = merge_grid(read_grid_file(grid_file), labels=list(labels), tuned=tuned_overrides(tuned.values, tuned.cores))
        return {p.cfg["label"]: p.cfg for p in plan_sweep(study, tmp_path / "runs")}

    alone, both = planned("lstm-m"), planned("lstm-m", "rims")
    assert alone["lstm-m"] == both["lstm-m"]
    assert alone["lstm-m"]["ppo"]["learning_rate"] == tuned.values["lstm-m"]["ppo.learning_rate"]
    assert both["rims"]["cores"]["rims"]["k"] == tuned.values["rims"]["cores.rims.k"]
    with pytest.raises(UserError, match="^--tuned has no values for label gru; its labels: rims, lstm-m$"):
        planned("gru")


def test_tuned_values_that_clash_with_set_or_another_core_are_refused(setup, refused, tmp_path):
    env_dir = _tuned(setup)
    grid_file = tmp_path / "study.yaml"
    grid_file.write_text(yaml.safe_dump({"config": str(setup[0].config), "labels": {
        "rims": {"core": "rims"}, "lstm": {"core": "gru"}}}))
    line = refused(["sweep", "--config", setup[0].config, "--core", "rims", "lstm", "--set", "ppo.learning_rate=0.01",
                    "--tuned", env_dir, "--logdir", tmp_path / "runs", "--no-progress"])
    assert "ppo.learning_rate of label rims is tuned (--tuned) and set by the grid, its task, the label or --set" in line
    line = refused(["sweep", grid_file, "--tuned", env_dir, "--logdir", tmp_path / "runs", "--no-progress"])
    assert "--tuned: label lstm was tuned as core lstm, not gru" in line
    assert not (tmp_path / "runs").exists()
