"""Shared by tests/test_eval_*.py: evaluated run dirs written directly (config, results.json, TB
training scalars), so compare and report can be tested without training."""
from __future__ import annotations

from pathlib import Path

import yaml

from agents.experiments.evaluation import Episode, Setting, add_normalized_scores, summarize, write_results
from agents.experiments.runs import run_dir_for
from envs import DEFAULT_ENV_ID

SETTINGS = (Setting("none", 0), Setting("distractors", 1, {"distractors": 1}), Setting("size", 3, {"size": 3}))
RANDOM = {"none": (0.4, 0.6), "distractors": (0.35, 0.5), "size": (0.3, 0.5)}  # return, success


def run_config(core: str, seed: int, eval_shifts: str | None = None) -> dict:
    """A fully resolved run config (the demo preset, 3000 steps) as `train` writes it."""
    from agents.experiments.train import _run_config, resolve_config

    cfg = _run_config(resolve_config("demo"), core, seed)
    cfg["timesteps"], cfg["env"] = 3000, DEFAULT_ENV_ID
    cfg["eval"]["shifts"] = eval_shifts
    return cfg


def write_run(root: Path, core: str, seed: int, success: dict[str, float], episodes: int = 20,
              size_return: float | None = None, curve: tuple[float, ...] = (0.1, 0.3, 0.5),
              eval_shifts: str | None = None) -> Path:
    """An evaluated run: per setting ``episodes`` episodes with the given success share (return 1 per
    success; ``size_return`` overrides the size setting's returns) and TB ``rollout/ep_rew_mean``."""
    from torch.utils.tensorboard import SummaryWriter

    run = run_dir_for(root, DEFAULT_ENV_ID, core, seed)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(run_config(core, seed, eval_shifts)))
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
