"""The sweep's Ray instance: start a local one or join a cluster, and what its nodes can hold.

Every request Ray could never satisfy is refused here in one line before a task waits for it: an
address where no Ray cluster answers, and CPUs or GPUs per run above the largest node's.
"""
from __future__ import annotations

import logging
import math
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ray

from rims_rl.errors import UserError, first_line

CONNECT_TIMEOUT_S = 10.0  # the TCP check of --address; a cluster's head answers within milliseconds
GCS_CONNECT_ATTEMPTS = "1"  # Ray's own connect loop: one attempt (~35 s) instead of 20 when the port is no GCS


@dataclass(frozen=True)
class NodeResources:
    """The CPUs and GPUs of one alive Ray node."""

    node_id: str
    cpus: float
    gpus: float


def start_local(workers: int) -> None:
    """Start a private Ray instance in this process with ``workers`` CPUs."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token warning for a private local instance
    # Workers import this package like the driver does: an installed package needs nothing, a
    # source checkout run with `python train_agent.py` gets its root on the workers' path.
    # Set in the environment the local instance's processes inherit, not as a runtime_env: workers
    # of a runtime_env cannot be the ones Ray starts ahead with ray.init, so every task waited for
    # a new worker process.
    root = str(Path(__file__).resolve().parents[3])
    with _environ(PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)):
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)


def join_cluster(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT``); UserError in one line, within about
    :data:`CONNECT_TIMEOUT_S`, when no cluster is found or none answers there."""
    target = check_address(address)
    try:
        with _environ(RAY_gcs_server_port_wait_time_s=os.environ.get("RAY_gcs_server_port_wait_time_s",
                                                                     GCS_CONNECT_ATTEMPTS)):
            ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"--address {address}: cannot join a Ray cluster there ({first_line(e)})") from None


def check_address(address: str) -> str:
    """The ``HOST:PORT`` of the Ray cluster at ``address`` once something answers there (``auto``: the
    cluster recorded on this machine, as Ray finds it); UserError in one line otherwise.

    Ray itself retries an address where nothing listens for minutes; a plain TCP connect answers at once
    (refused) or within :data:`CONNECT_TIMEOUT_S` (a host that drops packets). ``ray://`` client
    addresses are left to Ray.
    """
    if address.startswith("ray://"):
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # another Ray version: leave the lookup to ray.init
        canonicalize_bootstrap_address_or_die = None
    target = address
    if canonicalize_bootstrap_address_or_die is not None:
        try:
            target = canonicalize_bootstrap_address_or_die(address)
        except ConnectionError as e:
            raise UserError(f"--address {address}: {first_line(e).split('. ')[0]}; start a cluster with "
                            f"`ray start --head` or give its HOST:PORT") from None
        except Exception as e:  # noqa: BLE001 - Ray's parser raises ValueError or socket errors
            raise UserError(f"--address {address}: not a Ray address ({first_line(e)}); give HOST:PORT or auto") \
                from None
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        if address == "auto":
            return address
        raise UserError(f"--address {address}: not a Ray address; give HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
        raise UserError(f"--address {address}: no Ray cluster answers at {target} ({why}); check the address and "
                        f"that `ray start --head` runs there") from None
    return target


def alive_nodes() -> list[NodeResources]:
    """The alive nodes of the joined Ray instance with their CPUs and GPUs."""
    return [NodeResources(n["NodeID"], float(n.get("Resources", {}).get("CPU", 0)),
                          float(n.get("Resources", {}).get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def check_gpus_per_run(gpus: float, nodes: list[NodeResources], where: str) -> None:
    """UserError unless a node has ``gpus`` GPUs (Ray takes a fraction below 1, else a whole number)."""
    if gpus > 1 and not float(gpus).is_integer():
        raise UserError(f"--gpus-per-run {gpus}: above 1 it must be a whole number of GPUs (Ray shares a GPU only "
                        f"in fractions below 1)")
    if gpus > 0 and not any(n.gpus >= gpus for n in nodes):
        largest = max((n.gpus for n in nodes), default=0)
        found = f"its largest node has {largest:g}" if largest else "it has none"
        raise UserError(f"--gpus-per-run {gpus:g}: each run would need {gpus:g} GPU(s) {where}, but {found}; "
                        f"use a smaller --gpus-per-run or --device cpu")


def check_cpus_per_run(cpus: int, gpus: float, nodes: list[NodeResources], where: str) -> None:
    """UserError unless one node has ``cpus`` CPUs (and ``gpus`` GPUs) for one run."""
    if any(n.cpus >= cpus and n.gpus >= gpus for n in nodes):
        return
    largest = max((n.cpus for n in nodes if n.gpus >= gpus), default=0)
    with_gpus = f" and {gpus:g} GPU(s)" if gpus else ""
    raise UserError(f"threads {cpus}: each run asks for {cpus} CPUs{with_gpus}, but the largest node {where} has "
                    f"{largest:g}; use --set threads={int(largest) or 1} (or more --workers on a local machine)")


def runs_at_once(nodes: list[NodeResources], cpus: int, gpus: float) -> int:
    """How many runs of ``cpus`` CPUs and ``gpus`` GPUs each fit on ``nodes`` at once."""
    total = 0
    for n in nodes:
        fit = math.floor(n.cpus / cpus + 1e-9)
        if gpus > 0:
            fit = min(fit, math.floor(n.gpus / gpus + 1e-9))
        total += max(0, fit)
    return total


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the body (for the processes Ray starts), then restore them."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
