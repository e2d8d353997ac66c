"""A node of the sweep's cluster dies mid-run (ray.cluster_utils.Cluster: two simulated nodes of one CPU on
this machine, one removed): its run is retried from its checkpoint, the live line's counts never show the
dead attempt as running, its train.log says why it stopped, and stdout holds only the sweep's own lines.

The cluster gets random ports and its own session dir, so this test runs beside other Ray tests.
"""
from __future__ import annotations

import time

import ray

from agents.experiments.runs import FINAL_MODEL, read_num_timesteps
from agents.experiments.sweep.grid import PlannedRun
from agents.experiments.sweep.progress import read_progress
from agents.experiments.sweep.runner import RunnerSession
from agents.experiments.sweep.task import ATTEMPT_DIED, ATTEMPT_ENDED
from agents.experiments.validation import resolve_config, run_config

BUDGET = 3072


def _wait_until(session, condition, timeout, what):
    """Collect ended runs with ``session.wait`` until ``condition()``; their outcomes."""
    outcomes, deadline = [], time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        outcomes += session.wait(0.2)
    return outcomes


def _node_alive(node_id: str) -> bool:
    return any(n["Alive"] for n in ray.nodes() if n["NodeID"] == node_id)


def test_a_dead_node_s_run_is_retried_counted_as_waiting_and_its_log_says_why(tmp_path, tiny_config, ray_env,
                                                                               capfd):
    from ray.cluster_utils import Cluster

    base = resolve_config(str(tiny_config(tmp_path, timesteps=BUDGET)))
    runs = [PlannedRun(run_config(base, "lstm", seed), tmp_path / "runs" / f"seed{seed}", "new") for seed in (0, 1)]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker_node = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        capfd.readouterr()  # what the cluster's start printed is not the sweep's
        address = cluster.address
        with RunnerSession(address=address, progress=False, retries=1) as session:
            assert session.capacity() == 2
            for run in runs:
                session.submit(run)

            def both_train():
                records = [read_progress(run.run_dir) for run in runs]
                return all(r is not None and r.running and r.steps > 0 for r in records)

            outcomes = _wait_until(session, both_train, 180, "both runs to train")
            assert outcomes == [] and session.status()["running"] == 2
            victim, survivor = sorted(runs, key=lambda r: read_progress(r.run_dir).node != worker_node.node_id)
            assert read_progress(victim.run_dir).node == worker_node.node_id

            cluster.remove_node(worker_node, allow_graceful=False)
            outcomes += _wait_until(session, lambda: not _node_alive(worker_node.node_id), 60, "the node's death")
            survivor_pending = survivor not in [o.run for o in outcomes]
            counts = [session.status()]
            while session.running:
                outcomes += session.wait(0.2)
                counts.append(session.status())
            counts.append(session.status())
    finally:
        cluster.shutdown()

    out, err = capfd.readouterr()
    assert {o.run.run_dir: (o.status, o.steps) for o in outcomes} == {r.run_dir: ("done", BUDGET) for r in runs}
    assert all(read_num_timesteps(r.run_dir / FINAL_MODEL) == BUDGET for r in runs)
    # one CPU is left: the dead attempt never counts as running beside the survivor or the retry
    assert all(c["running"] <= 1 and c["done"] + c["running"] + c["failed"] + c["waiting"] == 2 for c in counts), \
        counts
    if survivor_pending:  # the survivor holds the last CPU: the dead node's run waits for it
        assert counts[0]["running"] == 1 and counts[0]["waiting"] == 1, counts
    assert counts[-1] == {"done": 2, "running": 0, "failed": 0, "waiting": 0, "steps": 2 * BUDGET}

    lines = (victim.run_dir / "train.log").read_text().splitlines()
    headers = [i for i, line in enumerate(lines) if " sweep task " in line]
    assert len(headers) == 2, lines  # the killed attempt and its retry
    killed, retry = lines[headers[0]:headers[1]], lines[headers[1]:]
    assert killed[-1] == ATTEMPT_DIED and not any(line.startswith(ATTEMPT_ENDED) for line in killed), killed
    assert any(line.startswith(f"resuming {victim.run_dir} from step") for line in retry)
    assert retry[-1] == f"{ATTEMPT_ENDED} (done)"
    assert (survivor.run_dir / "train.log").read_text().count(" sweep task ") == 1
    # Ray's driver prints the dead node's raylet log ([state-dump] lines) from a thread of its own: not to stdout
    assert out.splitlines() == [f"Ray joined at {address} in {out.split(' in ')[1].split()[0]} s"] + [
        f"done: {r.run_dir} ({BUDGET} steps)" for r in (survivor, victim)], out
