"""Requests a sweep could never serve fail in one line, fast: an address where no Ray cluster answers,
GPUs or CPUs per run above the largest node's, a YAML alias bomb; and a 20,000-run grid plans in seconds."""
from __future__ import annotations

import socket
import time

import pytest
import yaml

from agents.experiments.sweep.cluster import NodeResources, check_cpus_per_run, check_gpus_per_run, runs_at_once
from rims_rl.errors import UserError

ENV = "RedBallDistractors-v0"


def _grid(tiny_config, tmp_path, **keys) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"config": str(tiny_config(tmp_path)), **keys}))
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- --address

def test_an_address_where_nothing_listens_fails_in_one_line_at_once(tmp_path, capsys, run_main, one_line_error,
                                                                    tiny_config):
    import ray

    port = _free_port()
    t0 = time.perf_counter()
    code = run_main(["sweep", _grid(tiny_config, tmp_path), "--address", f"127.0.0.1:{port}",
                     "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, ["--address", str(port), "no Ray cluster answers"])
    assert time.perf_counter() - t0 < 30 and not ray.is_initialized()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("address, words", [("nonsense", ["not a Ray address"]), ("auto", ["auto", "ray start"])])
def test_a_bad_address_or_auto_without_a_cluster_fails_in_one_line(address, words, tmp_path, capsys, run_main,
                                                                   one_line_error, tiny_config, monkeypatch):
    """``auto`` as Ray resolves it, with no cluster recorded and no Ray process found on this machine (other
    users' instances on a shared machine are hidden from the lookup)."""
    import ray._private.services as services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    t0 = time.perf_counter()
    code = run_main(["sweep", _grid(tiny_config, tmp_path), "--address", address, "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, words)
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- resources

NODES = [NodeResources("a", cpus=8, gpus=0), NodeResources("b", cpus=4, gpus=1)]


@pytest.mark.parametrize("gpus, words", [(2, ["--gpus-per-run 2", "largest node has 1"]),
                                         (1.5, ["--gpus-per-run 1.5", "whole number"])])
def test_gpus_per_run_above_the_largest_node_are_refused(gpus, words):
    with pytest.raises(UserError) as e:
        check_gpus_per_run(gpus, NODES, "in the cluster")
    assert all(w in str(e.value) for w in words), e.value
    check_gpus_per_run(1, NODES, "in the cluster")
    check_gpus_per_run(0.25, NODES, "in the cluster")


def test_cpus_per_run_must_fit_one_node_with_its_gpus():
    check_cpus_per_run(8, 0, NODES, "in the cluster")
    with pytest.raises(UserError, match="threads 9: each run asks for 9 CPUs, but the largest node"):
        check_cpus_per_run(9, 0, NODES, "in the cluster")
    with pytest.raises(UserError, match="has 4;"):  # only node b has a GPU
        check_cpus_per_run(6, 1, NODES, "in the cluster")
    assert runs_at_once(NODES, 2, 0) == 6 and runs_at_once(NODES, 1, 0.5) == 2 and runs_at_once(NODES, 16, 0) == 0


@pytest.mark.parametrize("flags, words", [
    (["--gpus-per-run", "0.5"], ["--gpus-per-run 0.5", "has none"]),
    (["--workers", "1", "--set", "threads=2"], ["threads 2", "on this machine has 1;"]),
])
def test_an_infeasible_request_fails_in_one_line_before_any_run_starts(flags, words, tmp_path, capsys, run_main,
                                                                       one_line_error, tiny_config, ray_env):
    """On this machine (no GPU Ray counts, or 1 CPU for runs of 2 threads) Ray would wait forever."""
    import ray

    t0 = time.perf_counter()
    code = run_main(["sweep", _grid(tiny_config, tmp_path), *flags, "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, words)
    assert time.perf_counter() - t0 < 90 and not ray.is_initialized()
    assert not (tmp_path / "runs").exists()


def test_a_session_s_capacity_and_checks_on_a_local_instance(tmp_path, tiny_config, ray_env):
    import ray

    from agents.experiments.sweep.grid import PlannedRun
    from agents.experiments.sweep.runner import RunnerSession
    from agents.experiments.validation import resolve_config, run_config

    cfg = run_config(resolve_config(str(tiny_config(tmp_path))), "lstm", 0)
    with RunnerSession(workers=2, progress=False) as session:
        assert session.capacity() == 2 and session.capacity(2) == 1 and session.running == 0
        with pytest.raises(UserError, match="threads 3"):
            session.submit(PlannedRun({**cfg, "threads": 3}, tmp_path / "a", "new"))
        with pytest.raises(UserError, match="episodes"):
            session.submit(PlannedRun(cfg, tmp_path / "b", "new"), {"shifts": "none", "episodes": 0})
        with pytest.raises(UserError, match="unknown shift 'wobble'"):
            session.submit(PlannedRun(cfg, tmp_path / "c", "new"), {"shifts": "wobble", "episodes": 2})
        assert session.running == 0 and session.status()["waiting"] == 0 and session.wait(0.1) == []
    assert not ray.is_initialized()
    assert not any(tmp_path.glob("[abc]"))


# ---------------------------------------------------------------- large grids, YAML bombs

def test_a_20000_run_grid_plans_in_seconds(tmp_path):
    from agents.experiments.sweep.grid import Grid, plan_sweep

    t0 = time.perf_counter()
    plan = plan_sweep(Grid(cores=["rims", "lstm", "gru", "none"], seeds=list(range(5000)), config="minigrid"),
                      tmp_path / "runs")
    assert len(plan) == 20000 and len({p.run_dir for p in plan}) == 20000
    assert time.perf_counter() - t0 < 10


def _alias_bomb(depth: int = 8) -> str:
    """About 500 bytes whose aliases expand to 9**depth values."""
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]"
                                                   for i in range(1, depth)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("kind", ["grid", "config"])
def test_a_yaml_alias_bomb_fails_in_one_line_at_once(kind, tmp_path, capsys, run_main, one_line_error):
    path = tmp_path / "bomb.yaml"
    if kind == "grid":
        path.write_text(f"seeds: {_alias_bomb()}\n")
        argv = ["sweep", path]
    else:
        path.write_text(f"base: minigrid\nshifts: {_alias_bomb()}\n")
        argv = ["sweep", "--config", path]
    t0 = time.perf_counter()
    code = run_main([*argv, "--logdir", tmp_path / "runs"])
    one_line_error(code, capsys.readouterr().err, [str(path), "aliases expand"])
    assert time.perf_counter() - t0 < 5


def test_a_yaml_alias_loop_fails_in_one_line(tmp_path, capsys, run_main, one_line_error):
    path = tmp_path / "loop.yaml"
    path.write_text("seeds: &a [1, *a]\n")
    one_line_error(run_main(["sweep", path, "--logdir", tmp_path / "runs"]), capsys.readouterr().err,
                   [str(path), "loop"])


def test_yaml_anchors_of_ordinary_size_still_work(tmp_path, tiny_config):
    from agents.experiments.sweep.grid import merge_grid, plan_sweep, read_grid_file

    path = tmp_path / "grid.yaml"
    path.write_text(f"config: {tiny_config(tmp_path)}\ncores: [lstm]\ntasks:\n"
                    f"  - {{env: {ENV}, overrides: &fast {{ppo: {{n_epochs: 2, learning_rate: 0.001}}}}}}\n"
                    f"  - {{env: MiniGrid-DoorKey-5x5-v0, overrides: *fast}}\n")
    plan = plan_sweep(merge_grid(read_grid_file(path)), tmp_path / "runs")
    assert [(p.cfg["ppo"]["n_epochs"], p.cfg["ppo"]["learning_rate"]) for p in plan] == [(2, 0.001), (2, 0.001)]
