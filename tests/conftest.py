"""Shared test settings (tiny networks, one torch thread per test worker) and the shared fixtures.

The helpers live in tests/helpers.py; the tests get them through the fixtures below.
"""
import os
from pathlib import Path

import pytest
import torch

import helpers

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The checkout's root (train_agent.py lies there)."""
    return helpers.REPO


@pytest.fixture(scope="session")
def script() -> Path:
    """train_agent.py, to run the command line in a subprocess."""
    return helpers.SCRIPT


@pytest.fixture(scope="session")
def load_script():
    """``load_script(path)``: a script of the checkout (e.g. ``benchmarks/studies/findings.py``) as a module."""
    return helpers.load_script


@pytest.fixture
def tiny() -> dict:
    """The tiny config as a dict (a copy per test)."""
    return dict(helpers.TINY)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(directory, **changes)``: write the tiny config to ``directory/tiny.yaml``; its path."""
    return helpers.tiny_config


@pytest.fixture(scope="session")
def run_main():
    """``run_main(argv)``: the command line in this process; its exit code."""
    return helpers.run_main


@pytest.fixture(scope="session")
def run_script():
    """``run_script(argv, timeout)``: ``python train_agent.py argv`` in a subprocess, output captured."""
    return helpers.run_script


@pytest.fixture(scope="session")
def popen():
    """``popen(argv, log)``: start ``python train_agent.py argv`` with its output in ``log``.out/.err."""
    return helpers.popen


@pytest.fixture(scope="session")
def one_line_error():
    """``one_line_error(code, err, words)``: assert a user error (exit 2, one stderr line with ``words``)."""
    return helpers.one_line_error


@pytest.fixture
def refused(run_main, capsys, one_line_error):
    """``refused(argv, words)``: run the command line in this process and assert a user error (exit 2, one
    stderr line holding each of ``words``); that line."""
    def run(argv, words=()):
        return one_line_error(run_main(argv), capsys.readouterr().err, words)
    return run


@pytest.fixture(scope="session")
def train_tiny_run():
    """``train_tiny_run(root, core, timesteps)``: one tiny run trained through the command line; its run dir."""
    return helpers.train_tiny_run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, train_tiny_run) -> Path:
    """A tiny lstm run dir trained 32 steps (one per test module; tests change copies of it only)."""
    return train_tiny_run(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def ray_env(repo, monkeypatch):
    """Ray workers (and simulated cluster nodes started in the test) import the package from this checkout,
    whatever an editable install points at; no token warning from a private instance."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def snapshot():
    """``snapshot(root)``: every file under ``root`` with its content."""
    return helpers.snapshot


@pytest.fixture(scope="session")
def write_run():
    """``write_run(root, core, seed, success, ...)``: an evaluated run dir written directly (no training)."""
    return helpers.write_run


@pytest.fixture(scope="session")
def demo_run_config():
    """``demo_run_config(core, seed, eval_shifts)``: a resolved run config of the demo preset."""
    return helpers.demo_run_config
