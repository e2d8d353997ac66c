"""Evaluation on shifted environments: settings, episodes, statistics, results files, table.

One *setting* is an env with some shifts at some levels. A sweep always starts with the
unshifted setting (``shift="none", level=0``), whose mean return is the denominator of
``retention = mean return of the setting / mean return unshifted``.

``results.csv`` columns (one row per setting): env, shift, level, episodes, mean_return,
std_return, ci95_low, ci95_high, retention. ``results.json`` holds the same rows plus the
per-episode returns, the model file, its step count, the seed and ``deterministic``.
"""
from __future__ import annotations

import csv
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from agents.experiments.config import UserError
from agents.experiments.files import atomic_open

RESULT_COLUMNS = (
    "env", "shift", "level", "episodes", "mean_return", "std_return", "ci95_low", "ci95_high", "retention",
)
UNSHIFTED = "none"
EVAL_THREADS = 1  # one-step inference on a few envs: more threads only add synchronisation


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (None = unchanged), then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Setting:
    """One evaluation condition: ``shifts`` applied to the env; ``shift``/``level`` name it."""

    shift: str
    level: int
    shifts: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    """Statistics of the returns of one setting (a row of results.csv)."""

    env: str
    shift: str
    level: int
    episodes: int
    mean_return: float
    std_return: float
    ci95_low: float
    ci95_high: float
    retention: float | None = None
    returns: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The results.csv row (no per-episode returns)."""
        return {k: v for k, v in asdict(self).items() if k in RESULT_COLUMNS}


def _to_list(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return spec.split()
    return [str(s) for s in spec]


def sweep_settings(env_id: str, spec: str | Sequence[str] | None) -> list[Setting]:
    """Settings of a sweep, unshifted first.

    ``spec`` items: ``all`` (every shift of the env at every level > 0), ``none`` (unshifted only),
    a shift name (that shift at every level > 0), or a shifts spec such as ``distractors=2`` or
    ``colour=2,sprites=1`` (one setting). Unknown names raise UserError listing the valid ones.
    """
    from envs import list_shifts, parse_shifts

    available = list_shifts(env_id)
    settings = [Setting(UNSHIFTED, 0, {})]

    def add(setting: Setting) -> None:
        if setting.level > 0 and setting not in settings:
            settings.append(setting)

    for item in _to_list(spec) or ["all"]:
        if item == "none":
            continue
        if item == "all":
            names = list(available)
        elif "=" not in item:
            if item not in available:
                valid = ", ".join(["all", "none", *available])
                raise UserError(f"unknown shift {item!r} for {env_id}; valid: {valid} (or name=level)")
            names = [item]
        else:
            shifts = parse_shifts(item, env_id)
            if len(shifts) == 1:
                (name, level), = shifts.items()
                add(Setting(name, int(level), dict(shifts)))
            else:
                add(Setting(",".join(f"{k}={v}" for k, v in shifts.items()), max(shifts.values()), dict(shifts)))
            continue
        for name in names:
            for level in sorted(available[name].levels):
                add(Setting(name, int(level), {name: int(level)}))
    return settings


def run_episodes(
    model,
    env_id: str,
    shifts: dict[str, int] | None,
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    n_envs: int = 4,
    on_step: Callable[[Any], None] | None = None,
) -> np.ndarray:
    """True (unclipped) returns of ``episodes`` complete episodes, shape ``[episodes]``.

    Episodes are spread evenly over ``min(n_envs, episodes)`` sub-envs, so short episodes are not
    over-represented. The recurrent state is carried by ``model.predict`` and reset at episode
    starts and, for Atari, at every lost life, as in training (``envs.episode_starts``).
    ``on_step(model)`` is called after every ``predict`` (e.g. to read the RIMs mask).
    """
    from envs import episode_starts, make_vec_env

    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    n = max(1, min(n_envs, episodes))
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=int)
    returns: list[float] = []
    venv = make_vec_env(env_id, n_envs=n, seed=seed, shifts=shifts or None, training=False)
    try:
        obs = venv.reset()
        state = None
        starts = np.ones(n, dtype=bool)
        while (counts < targets).any():
            actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            if on_step is not None:
                on_step(model)
            obs, _, dones, infos = venv.step(actions)
            for i, info in enumerate(infos):
                if "episode" in info and counts[i] < targets[i]:
                    returns.append(float(info["episode"]["r"]))
                    counts[i] += 1
            starts = episode_starts(dones, infos)
    finally:
        venv.close()
    return np.asarray(returns, dtype=np.float64)


def summarize(env_id: str, setting: Setting, returns: np.ndarray) -> Result:
    """Mean, sample std and Student-t 95% CI of the mean of ``returns`` (``[episodes]``)."""
    from scipy import stats

    n = len(returns)
    mean = float(np.mean(returns))
    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else 0.0
    return Result(env_id, setting.shift, setting.level, n, mean, std, mean - half, mean + half,
                  returns=[float(r) for r in returns])


def add_retention(results: list[Result]) -> None:
    """Set ``retention = mean_return / unshifted mean_return`` (None if the latter is 0)."""
    base = next(r for r in results if r.shift == UNSHIFTED)
    for r in results:
        r.retention = r.mean_return / base.mean_return if base.mean_return != 0 else None


def evaluate_model(
    model,
    env_id: str,
    settings: list[Setting],
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    n_envs: int = 4,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run every setting and return its Result (with retention)."""
    results = []
    for setting in settings:
        returns = run_episodes(model, env_id, setting.shifts, episodes, seed, deterministic, n_envs)
        results.append(summarize(env_id, setting, returns))
        if on_result is not None:
            on_result(results[-1])
    add_retention(results)
    return results


def write_csv_json(out_dir: str | os.PathLike, stem: str, columns: Sequence[str], rows: list[dict[str, Any]],
                   document: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (``rows`` restricted to ``columns``) and ``<stem>.json`` (``document`` plus
    the column list) into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    with atomic_open(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(json_path, "w") as f:
        json.dump({**document, "columns": list(columns)}, f, indent=2)
    return csv_path, json_path


def write_results(results: list[Result], out_dir: str | os.PathLike, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` into ``out_dir``; return their paths."""
    return write_csv_json(out_dir, "results", RESULT_COLUMNS, [r.row() for r in results],
                          {**meta, "results": [asdict(r) for r in results]})


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Load a ``results.json`` (UserError if missing or unreadable)."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
        data["results"]  # noqa: B018 - presence check
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `rims-rl evaluate` on that run first") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a results file ({type(e).__name__})") from None
    return data


def log_results_to_tensorboard(results: list[Result], tb_dir: str | os.PathLike) -> Path:
    """Write ``eval/<shift>/{mean_return,retention}`` scalars with step = level to ``tb_dir``."""
    from torch.utils.tensorboard import SummaryWriter

    tb_dir = Path(tb_dir)
    base = next(r for r in results if r.shift == UNSHIFTED)
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        for r in results:
            if r.shift == UNSHIFTED:
                continue
            if not any(o.shift == r.shift and o.level < r.level for o in results):
                # start every shift's curve at level 0 (the unshifted setting)
                writer.add_scalar(f"eval/{r.shift}/mean_return", base.mean_return, 0)
                writer.add_scalar(f"eval/{r.shift}/retention", 1.0, 0)
            writer.add_scalar(f"eval/{r.shift}/mean_return", r.mean_return, r.level)
            if r.retention is not None:
                writer.add_scalar(f"eval/{r.shift}/retention", r.retention, r.level)
        writer.add_scalar("eval/unshifted/mean_return", base.mean_return, 0)
    finally:
        writer.close()
    return tb_dir


def format_number(x: float | None) -> str:
    """A compact number for tables ("-" for None/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table_console():
    """A rich Console for tables: the terminal's width, or 120 columns when output is piped."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def print_results_table(results: list[Result], title: str) -> None:
    """Print the results as a rich table."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("shift", "level", "episodes", "mean return", "std", "95% CI", "retention"):
        table.add_column(col, justify="left" if col == "shift" else "right")
    for r in results:
        table.add_row(
            r.shift, str(r.level), str(r.episodes), format_number(r.mean_return), format_number(r.std_return),
            f"[{format_number(r.ci95_low)}, {format_number(r.ci95_high)}]", format_number(r.retention),
        )
    table_console().print(table)
