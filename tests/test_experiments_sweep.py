"""`rims-rl sweep` on a real local Ray instance: runs side by side, skip on re-run, retries, failures, bad grids.

The Ray tests run the CLI in a subprocess (which starts and shuts down its own Ray instance with
``address="local"``, so two of them can run at once) on the tiny config (the ``tiny_config`` fixture).
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import yaml

from agents.experiments.config import dump_config
from agents.experiments.runs import CHECKPOINT, FINAL_MODEL, lock_path, read_num_timesteps, read_run_config
from agents.experiments.sweep.task import ATTEMPT_DIED
from agents.experiments.validation import resolve_config, run_config

ENV = "RedBallDistractors-v0"
EVAL = {"sweep": "none", "episodes": 2}  # the evaluation of the tiny runs: unshifted only


# ---------------------------------------------------------------- no Ray: bad grids fail before it starts

def _grid(tiny_config, tmp_path, **keys) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"config": str(tiny_config(tmp_path)), **keys}))
    return str(path)


@pytest.mark.parametrize("grid, flags, words", [
    ({"envs": ["NoSuchEnv-v9"]}, [], ["NoSuchEnv-v9"]),
    ({"cores": ["rims", "transformer"]}, [], ["transformer", "lstm"]),
    ({"overrides": {"ppo": {"bogus": 1}}}, [], ["ppo.bogus", "learning_rate"]),
    ({"overrides": ["timesteps=many"]}, [], ["timesteps", "many"]),
    ({"sedes": [0, 1]}, [], ["sedes", "seeds"]),
    ({"seeds": []}, [], ["seeds", "empty"]),
    ({"cores": []}, [], ["cores", "empty"]),
    ({"seeds": ["one"]}, [], ["seeds", "integers"]),
    ({}, ["--core", "lstm", "--set", "cores.lstm.hidden_size=big"], ["hidden_size", "big"]),
    ({}, ["--device", "tpu"], ["tpu", "cuda"]),
    ({}, ["--device", "cuda:1"], ["cuda:1", "--device cuda"]),
    ({}, ["--retries", "-1"], ["--retries"]),
    ({}, ["--evaluate", "--episodes", "0"], ["--episodes", "0"]),
    ({}, ["--evaluate", "--episodes", str(2**32)], ["--episodes", "reset seed"]),
    ({"tasks": []}, [], ["tasks", "non-empty"]),
    ({"tasks": [{"timesteps": 64}]}, [], ["task 1", "env"]),
    ({"tasks": [{"env": ENV, "budget": 64}]}, [], ["task 1", "budget", "timesteps"]),
    ({"tasks": [{"env": ENV}, {"env": ENV}]}, [], ["task 2", ENV, "earlier"]),
    ({"tasks": [{"env": ENV, "timesteps": "long"}]}, [], ["task 1", "timesteps", "long"]),
    ({"tasks": [{"env": ENV}], "envs": [ENV]}, [], ["envs or tasks"]),
    ({"tasks": [{"env": ENV}]}, ["--env", "MiniGrid-DoorKey-5x5-v0"], ["MiniGrid-DoorKey-5x5-v0", ENV]),
    ({"tasks": [{"env": ENV, "overrides": {"ppo": {"n_epochs": 0}}}]}, [], ["n_epochs"]),
])
def test_a_bad_grid_fails_in_one_line_before_ray_starts(grid, flags, words, tmp_path, capsys, run_main, one_line_error,
                                                        tiny_config):
    import ray

    t0 = time.perf_counter()
    code = run_main(["sweep", _grid(tiny_config, tmp_path, **grid), *flags, "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, words)
    assert not ray.is_initialized() and time.perf_counter() - t0 < 10
    assert not (tmp_path / "runs").exists()


def test_tasks_give_each_env_its_own_budget_and_overrides(tmp_path, tiny_config):
    from agents.experiments.sweep.grid import merge_grid, plan_sweep, read_grid_file

    door = "MiniGrid-DoorKey-5x5-v0"
    path = _grid(tiny_config, tmp_path, cores=["lstm"], seeds=[0, 1], overrides={"ppo": {"n_epochs": 2}}, tasks=[
        {"env": ENV, "timesteps": 96},
        {"env": door, "timesteps": 160, "overrides": {"ppo": {"learning_rate": 0.0003}}},
    ])
    plan = plan_sweep(merge_grid(read_grid_file(path)), tmp_path / "runs")
    budgets = {(p.cfg["env"], p.cfg["seed"]): (p.cfg["timesteps"], p.cfg["ppo"]["learning_rate"],
                                                p.cfg["ppo"]["n_epochs"]) for p in plan}
    tiny_lr = resolve_config(str(tiny_config(tmp_path)))["ppo"]["learning_rate"]
    assert budgets == {(ENV, 0): (96, tiny_lr, 2), (ENV, 1): (96, tiny_lr, 2),
                       (door, 0): (160, 0.0003, 2), (door, 1): (160, 0.0003, 2)}
    assert {p.run_dir.parent.parent.name for p in plan} == {ENV, door}
    # --env picks tasks; an explicit --timesteps replaces every task's budget
    file_grid = read_grid_file(path)
    picked = plan_sweep(merge_grid(file_grid, envs=[door], timesteps=64), tmp_path / "runs")
    assert {(p.cfg["env"], p.cfg["timesteps"]) for p in picked} == {(door, 64)}
    assert [job.timesteps for job in file_grid.jobs] == [96, 160] and file_grid.envs is None  # the file's grid is kept
    assert not (tmp_path / "runs").exists()


def test_the_driver_plans_and_reports_a_sweep_without_importing_torch(tmp_path, repo):
    """What the sweep's driver process does (check and plan the grid, pick the device, print the table)
    imports neither torch nor SB3: only the Ray workers do. On 2 cores that put Ray's start about 1.5 s
    earlier and the driver's exit 0.6 s earlier (docs/sweep.md, bench_sweep)."""
    import subprocess
    import sys

    path = tmp_path / "grid.yaml"  # the built-in presets (the tiny config's policy_kwargs need the policy class)
    path.write_text(yaml.safe_dump({"envs": [ENV, "MiniGrid-DoorKey-5x5-v0", "ALE/Pong-v5"],
                                    "cores": ["rims", "lstm", "gru", "none"], "seeds": [0, 1]}))
    code = ("import sys\n"
            "from agents.experiments.sweep.grid import merge_grid, plan_sweep, read_grid_file, RunOutcome\n"
            "from agents.experiments.sweep.live import print_outcomes\n"
            "from agents.experiments.sweep.driver import sweep_device\n"
            f"plan = plan_sweep(merge_grid(read_grid_file({str(path)!r})), {str(tmp_path / 'runs')!r})\n"
            "assert sweep_device(None, plan, None, None) == 'auto' and len(plan) == 24\n"
            "print_outcomes([RunOutcome(run, 'done', 64) for run in plan])\n"
            "print('heavy:', sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "heavy: []", result.stdout


def test_a_task_with_a_user_error_fails_at_once_and_a_bug_is_raised_for_ray_to_retry(tmp_path, monkeypatch,
                                                                                     tiny_config):
    """A UserError (a run that cannot succeed) fails the run without a retry; any other exception, a plain
    ValueError included, is a bug or a passing fault: the task logs its traceback and raises it to Ray."""
    import ray

    from agents.experiments import train
    from agents.experiments.sweep.task import run_task
    from rims_rl.errors import UserError

    def fail_with(error):
        def broken_train_run(*args, **kwargs):
            raise error
        monkeypatch.setattr(train, "train_run", broken_train_run)

    cfg = run_config(resolve_config(str(tiny_config(tmp_path))), "lstm", 0)
    fail_with(UserError("unknown word 'wobble' in mission 'wobble the ball'"))
    outcome = run_task(cfg, str(tmp_path / "run"), "cpu", None, "tiny lstm seed0", "session-a")
    assert outcome["status"] == "failed" and "wobble" in outcome["reason"]
    assert "wobble" in (tmp_path / "run" / "train.log").read_text()

    fail_with(ValueError("operands could not be broadcast together"))
    with pytest.raises(ValueError, match="broadcast"):
        run_task(cfg, str(tmp_path / "bug"), "cpu", None, "tiny lstm seed0", "session-a")
    log = (tmp_path / "bug" / "train.log").read_text()
    assert "Traceback" in log and "broken_train_run" in log and "Ray retries it" in log
    assert not ray.is_initialized()  # a direct call starts no Ray instance (none left running)


@pytest.mark.parametrize("error, attempts, status", [("UserError", 1, "failed"), ("ValueError", 2, None)])
def test_ray_retries_a_task_that_raises_a_bug_but_not_one_with_a_user_error(error, attempts, status, tmp_path,
                                                                             tiny_config, ray_env):
    """The task as the sweep submits it (its Ray options, one retry) on a real local Ray instance."""
    import logging

    import ray

    from agents.experiments.sweep.grid import PlannedRun
    from agents.experiments.sweep.task import run_task, task_options

    def task(cfg, run_dir):  # in the worker: its train_run raises `error` (the test module is not importable there)
        from agents.experiments import train
        from rims_rl.errors import UserError

        def broken_train_run(*args, **kwargs):
            raise {"UserError": UserError, "ValueError": ValueError}[error]("the cause")

        train.train_run = broken_train_run
        return run_task(cfg, run_dir, "cpu", None, "tiny lstm seed0", "session-a")

    cfg = run_config(resolve_config(str(tiny_config(tmp_path))), "lstm", 0)
    run = tmp_path / "runs" / "lstm" / "seed0"
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    try:
        ref = ray.remote(task).options(**task_options(PlannedRun(cfg, run, "new"), 0.0, retries=1)).remote(
            cfg, str(run))
        if status is None:
            with pytest.raises(ValueError, match="the cause"):  # Ray re-raises it once the retry failed too
                ray.get(ref, timeout=120)
        else:
            assert ray.get(ref, timeout=120)["status"] == status
    finally:
        ray.shutdown()
    assert (run / "train.log").read_text().count("sweep task") == attempts


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_sweep_on_cuda_without_a_gpu_fails_before_ray_starts(tmp_path, capsys, run_main, one_line_error, tiny_config):
    code = run_main(["sweep", _grid(tiny_config, tmp_path), "--device", "cuda", "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, ["cuda", "not available"])
    assert not (tmp_path / "runs").exists()


def test_a_run_dir_with_another_config_is_refused_before_ray_starts(tmp_path, capsys, run_main, tiny_config,
                                                                     one_line_error):
    cfg = run_config(resolve_config(str(tiny_config(tmp_path))), "lstm", 1)
    run = tmp_path / "runs" / ENV / "lstm" / "seed1"
    run.mkdir(parents=True)
    dump_config({**cfg, "n_envs": 4}, run / "config.yaml")
    grid = _grid(tiny_config, tmp_path, cores=["lstm"], seeds=[0, 1])
    code = run_main(["sweep", grid, "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, [str(run), "n_envs"])
    assert not (run.parent / "seed0").exists()


# ---------------------------------------------------------------- real Ray

def test_sweep_runs_side_by_side_evaluates_compares_and_skips_on_rerun(tmp_path, tiny_config, run_script, ray_env):
    tiny = tiny_config(tmp_path, eval=EVAL)
    args = ["sweep", "--config", tiny, "--core", "rims", "lstm", "--seed", 0, 1, "--logdir", tmp_path / "runs",
            "--workers", 2, "--evaluate", "--no-progress"]
    first = run_script(args, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = sorted((tmp_path / "runs" / ENV).glob("*/seed*"))
    assert [f"{r.parent.name}/{r.name}" for r in runs] == ["lstm/seed0", "lstm/seed1", "rims/seed0", "rims/seed1"]
    for run in runs:
        assert read_num_timesteps(run / FINAL_MODEL) == 64
        assert read_run_config(run)["core"] == run.parent.name
        assert (run / "eval" / "results.json").is_file() and (run / "tb").is_dir()
        assert "done: 64 steps" in (run / "train.log").read_text()
    assert (tmp_path / "runs" / ENV / "compare" / "compare.csv").is_file()
    assert "4 done (of 4 runs)" in first.stdout

    stamps = {r: (r / FINAL_MODEL).stat().st_mtime_ns for r in runs}
    t0 = time.perf_counter()
    second = run_script(args, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "4 already done, 0 to run" in second.stdout and "4 skipped (of 4 runs)" in second.stdout
    assert "Ray started" not in second.stdout  # nothing to run: Ray is not even started
    assert time.perf_counter() - t0 < 60
    assert stamps == {r: (r / FINAL_MODEL).stat().st_mtime_ns for r in runs}


def test_a_killed_worker_is_retried_from_its_checkpoint_and_a_failing_run_stops_no_other(tmp_path, tiny_config, popen,
                                                                                         ray_env):
    """lstm seed0's worker is SIGKILLed mid-training; seed1 has a corrupt checkpoint; seed2 is healthy."""

    budget = 960
    tiny = tiny_config(tmp_path, timesteps=budget)
    broken = tmp_path / "runs" / ENV / "lstm" / "seed1"
    (broken / "checkpoints").mkdir(parents=True)
    dump_config(run_config(resolve_config(str(tiny)), "lstm", 1), broken / "config.yaml")
    (broken / CHECKPOINT).write_bytes(b"PK\x03\x04 not a model")

    victim = tmp_path / "runs" / ENV / "lstm" / "seed0"
    proc = popen(["sweep", "--config", tiny, "--core", "lstm", "--seed", 0, 1, 2, "--logdir", tmp_path / "runs",
                  "--workers", 2, "--retries", 1, "--no-progress"], tmp_path / "sweep")
    try:
        deadline = time.time() + 180
        while not ((victim / CHECKPOINT).is_file() and read_num_timesteps(victim / CHECKPOINT) < budget):
            assert proc.poll() is None and time.time() < deadline, "no checkpoint of seed0 before the end"
            time.sleep(0.05)
        worker = int(lock_path(victim).read_text())
        assert worker != proc.pid
        os.kill(worker, signal.SIGKILL)
        killed_at = read_num_timesteps(victim / CHECKPOINT)
        code = proc.wait(timeout=240)
    finally:
        proc.kill()
    out, err = (tmp_path / "sweep.out").read_text(), (tmp_path / "sweep.err").read_text()
    assert code == 1, out + err
    last = err.strip().splitlines()[-1]  # before it, Ray's own notes on the dead worker: stderr, not the table
    assert last.startswith("rims-rl: error: 1 of 3 runs failed") and str(broken) in last and "Traceback" not in err, err
    assert "(raylet)" not in out and "worker died" not in out, out
    table = {line.split()[2]: line.split() for line in out.splitlines() if line.startswith("  ") and ENV in line}
    assert table[str(victim)][:2] == ["done", str(budget)]
    assert table[str(victim.parent / "seed2")][:2] == ["done", str(budget)]
    assert table[str(broken)][0] == "failed" and f"cannot load model {broken / CHECKPOINT}" in out
    assert str(broken / "train.log") in out
    assert read_num_timesteps(victim / FINAL_MODEL) == budget
    log = (victim / "train.log").read_text()
    assert log.count("sweep task") == 2, log  # the first attempt and the retry
    assert ATTEMPT_DIED in log.split("sweep task")[1]  # written by the retry: the killed attempt could not
    assert f"resuming {victim} from step" in log
    resumed_from = int(log.split(f"resuming {victim} from step ")[1].split()[0])
    assert 0 < resumed_from and resumed_from >= killed_at
    assert not (broken / FINAL_MODEL).exists()


def test_sweep_joins_a_multi_node_cluster_with_address(tmp_path, run_script, tiny_config, ray_env):
    """Two simulated nodes (ray.cluster_utils.Cluster, both on this machine) with one CPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = cluster.address
        result = run_script(["sweep", "--config", tiny_config(tmp_path, timesteps=32), "--core", "lstm",
                             "--seed", 0, 1, "--logdir", tmp_path / "runs", "--address", address,
                             "--no-progress"], timeout=240)
    finally:
        cluster.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"joined at {address}" in result.stdout
    nodes = set()
    for seed in (0, 1):
        run = tmp_path / "runs" / ENV / "lstm" / f"seed{seed}"
        assert read_num_timesteps(run / FINAL_MODEL) == 32
        nodes.add((run / "train.log").read_text().split("Ray node ")[1].split(")")[0])
    assert len(nodes) == 2  # one run on each node


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_the_config_device_is_the_sweep_device_unless_the_flag_says_otherwise(tmp_path, capsys, run_main,
                                                                              one_line_error, tiny_config):
    code = run_main(["sweep", _grid(tiny_config, tmp_path, overrides=["device=cuda"]), "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, ["cuda", "not available"])
    code = run_main(["sweep", _grid(tiny_config, tmp_path, overrides=["device=cuda:0"]), "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, ["cuda:0", "--device cuda"])
    code = run_main(["sweep", _grid(tiny_config, tmp_path, overrides=["device=cpu"]), "--gpus-per-run", 1,
                     "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, ["--gpus-per-run", "cpu"])
    assert not (tmp_path / "runs").exists()
