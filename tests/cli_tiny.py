"""Shared by the tests/test_cli_*.py files: a tiny config and helpers to run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train_agent.py"

# A network and budget small enough for a few seconds per run on one core.
TINY = {
    "base": "minigrid",
    "timesteps": 64,
    "n_envs": 2,
    "checkpoint_freq": 32,
    "ppo": {"n_steps": 16, "n_epochs": 1, "n_minibatches": 1},
    "cores": {
        "rims": {"num_units": 3, "k": 2, "unit_size": 4, "input_key_size": 4, "comm_key_size": 4,
                 "comm_value_size": 4, "num_comm_heads": 1},
        "lstm": {"hidden_size": 12},
    },
    "policy_kwargs": {"features_dim": 16},
}


def tiny_config(directory: Path, **changes) -> Path:
    """Write the tiny config (with top-level ``changes``) to ``directory/tiny.yaml``."""
    path = Path(directory) / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def run_main(argv: list[str]) -> int:
    """Call ``train_agent.main`` in-process; argparse exits become return codes."""
    from train_agent import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code or 0)


def popen(argv: list[str], log: Path) -> subprocess.Popen:
    """Start ``python train_agent.py argv`` with stdout and stderr in ``log``.out / ``log``.err."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, argv)], cwd=REPO, env=env,
                            stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"))


def run_script(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python train_agent.py argv`` to completion, capturing its output."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def train_tiny_run(root: Path, core: str = "lstm", timesteps: int = 32) -> Path:
    """Train one tiny run under ``root/runs`` through the CLI (in-process) and return its run dir."""
    root = Path(root)
    assert run_main(["train", "--config", tiny_config(root), "--core", core, "--logdir", root / "runs",
                     "--timesteps", timesteps, "--no-progress"]) == 0
    (run,) = (root / "runs").glob(f"*/{core}/seed0")
    return run
