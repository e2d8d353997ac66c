"""`rims-rl tune` on a real local Ray instance: trials as sweep runs, SIGTERM mid-tune, the re-run finishing
the budget with no lost or duplicated trial."""
import csv
import signal
import time

import yaml

ENV = "RedBallDistractors-v0"


def _trials(logdir):
    path = logdir / ENV / "trials.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tune_survives_sigterm_and_finishes_its_budget_on_rerun(tmp_path, tiny_config, popen, run_script, ray_env):
    cfg = tiny_config(tmp_path, timesteps=256, checkpoint_freq=64)
    space = tmp_path / "space.yaml"
    space.write_text("ppo.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    logdir = tmp_path / "tune"
    argv = ["tune", "--config", cfg, "--core", "lstm", "none", "--trials", 3, "--seeds-per-trial", 1,
            "--space", space, "--episodes", 2, "--workers", 2, "--logdir", logdir, "--no-progress"]
    process = popen(argv, tmp_path / "first")
    try:
        deadline = time.time() + 240
        while not _trials(logdir) and time.time() < deadline and process.poll() is None:
            time.sleep(0.5)
        assert _trials(logdir), (tmp_path / "first.err").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143, (tmp_path / "first.err").read_text()
    finally:
        if process.poll() is None:
            process.kill()
    err = (tmp_path / "first.err").read_text()
    assert "Traceback" not in err and "stack" not in err.lower()
    import optuna

    from agents.experiments.tune import storage

    journal = storage.journal_storage(logdir / ENV)
    for label in ("lstm", "none"):
        states = [t.state for t in optuna.load_study(study_name=f"{ENV}/{label}", storage=journal).trials]
        assert optuna.trial.TrialState.RUNNING not in states
    result = run_script(argv, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = _trials(logdir)
    assert sorted(r["label"] for r in rows) == ["lstm"] * 3 + ["none"] * 3
    assert len({(r["label"], r["trial"]) for r in rows}) == 6
    tuned = yaml.safe_load((logdir / ENV / "tuned.yaml").read_text())
    assert set(tuned) == {"lstm", "none"}
    # every trial's runs used a tuning seed
    assert {p.name for p in (logdir / ENV).glob("*-trial*/seed*")} == {"seed1000"}
