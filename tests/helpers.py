"""The tests' helpers (conftest.py hands them to the tests as fixtures): a tiny config, running the
command line, and evaluated run dirs written directly (so compare and report can be tested without training)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

import yaml
from torch.utils.tensorboard import SummaryWriter

from agents.experiments.evaluation.episodes import Episode
from agents.experiments.evaluation.ladder import Setting
from agents.experiments.evaluation.metrics import add_normalized_scores, summarize
from agents.experiments.evaluation.results import write_results
from agents.experiments.runs import run_dir_for
from agents.experiments.validation import resolve_config, run_config
from envs import DEFAULT_ENV_ID

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


def load_script(path: str) -> ModuleType:
    """A script of the checkout that is not a package module (e.g. ``benchmarks/studies/findings.py``), by its
    path from the root, loaded as a module."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def run_script(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python train_agent.py argv`` to completion, capturing its output (``kwargs``: e.g. ``preexec_fn``)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def one_line_error(code: int, err: str, words: Sequence[str] = ()) -> str:
    """Assert that a command failed as a user error: exit code 2, one stderr line without a traceback,
    holding each of ``words``; return that line."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` with its content (to show that a failed command changed nothing)."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def train_tiny_run(root: Path, core: str = "lstm", timesteps: int = 32) -> Path:
    """Train one tiny run under ``root/runs`` through the CLI (in-process) and return its run dir."""
    root = Path(root)
    assert run_main(["train", "--config", tiny_config(root), "--core", core, "--logdir", root / "runs",
                     "--timesteps", timesteps, "--no-progress"]) == 0
    (run,) = (root / "runs").glob(f"*/{core}/seed0")
    return run


# ---------------------------------------------------------------- evaluated run dirs, written directly

SETTINGS = (Setting("none", 0), Setting("distractors", 1, {"distractors": 1}), Setting("size", 3, {"size": 3}))
RANDOM = {"none": (0.4, 0.6), "distractors": (0.35, 0.5), "size": (0.3, 0.5)}  # return, success


def demo_run_config(core: str, seed: int, eval_shifts: str | None = None) -> dict:
    """A fully resolved run config (the demo preset, 3000 steps) as `train` writes it."""
    cfg = run_config(resolve_config("demo"), core, seed)
    cfg["timesteps"], cfg["env"] = 3000, DEFAULT_ENV_ID
    cfg["eval"]["shifts"] = eval_shifts
    return cfg


def write_run(root: Path, core: str, seed: int, success: dict[str, float], episodes: int = 20,
              size_return: float | None = None, curve: tuple[float, ...] = (0.1, 0.3, 0.5),
              eval_shifts: str | None = None, label: str | None = None, changes: dict | None = None) -> Path:
    """An evaluated run: per setting ``episodes`` episodes with the given success share (return 1 per
    success; ``size_return`` overrides the size setting's returns) and TB ``rollout/ep_rew_mean``.
    ``label``: the run's label (default the core); ``changes``: dotted config keys to set."""
    from agents.experiments.config import set_value

    cfg = demo_run_config(core, seed, eval_shifts)
    cfg["label"] = label or core
    for key, value in (changes or {}).items():
        set_value(cfg, key, value)
    run = run_dir_for(root, DEFAULT_ENV_ID, cfg["label"], seed)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    results = []
    for s in SETTINGS:
        wins = round(success[s.shift] * episodes)
        value = size_return if (s.shift == "size" and size_return is not None) else 1.0
        eps = [Episode(i, 1000 + i, value if i < wins else 0.0, i < wins, 10) for i in range(episodes)]
        r = summarize(DEFAULT_ENV_ID, s, eps)
        r.random_return, r.random_success_rate = RANDOM[s.shift]
        results.append(r)
    add_normalized_scores(results)
    write_results(results, run / "eval", {"env": DEFAULT_ENV_ID, "episodes": episodes, "num_timesteps": 3000,
                                          "seed": 1000})
    writer = SummaryWriter(str(run / "tb" / "train_1"))
    for step, value in zip((1000, 2000, 3000), curve):
        writer.add_scalar("rollout/ep_rew_mean", value + 0.01 * seed, step)
    writer.close()
    return run
