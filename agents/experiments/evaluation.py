"""Evaluation on shifted environments: settings, paired episodes, per-setting metrics, results files.

One *setting* is an env with some shifts at some levels. A sweep always starts with the unshifted
setting (``shift="none", level=0``).

**Paired episodes.** Episode ``i`` of every setting and every model is reset with the seed
``seed + i`` (layouts, no-op starts, floor tiles), whichever sub-env runs it, and exactly
``episodes`` episodes are kept, indexed by ``i`` (not "whatever finished first"). So differences
between cores and levels are paired.

**Metrics per episode:** return (true, unclipped), success (MiniGrid/BabyAI: the episode ended
with a positive reward, i.e. the goal was reached; Atari: None, no such notion) and length.

``results.csv`` columns (one row per setting):

- ``env, shift, level``: the setting; ``episodes``: how many episodes it ran;
- ``mean_return, std_return``: mean and sample std of the episode returns;
  ``ci95_low, ci95_high``: Student-t 95% CI of the mean return;
- ``success_rate``: share of successful episodes (empty where the env has no success notion);
  ``success_ci95_low, success_ci95_high``: its 95% Wilson interval;
- ``mean_length``: mean episode length in agent steps;
- ``random_return, random_success_rate``: the random-policy baseline of the same setting on the
  same episode seeds (see ``agents.experiments.baseline``; empty without a baseline);
- ``normalized_score``: ``(R - R_random) / (R_unshifted - R_random_unshifted)`` with ``R`` the
  setting's mean return: 1 = as far above chance as in training conditions, 0 = chance level.
  Empty when the model does not beat the random policy unshifted (the ratio would be meaningless).
  Retention is this normalized score (or the success rate), never a ratio of raw returns.

``results.json`` holds the same rows, each with its per-episode records (``index``, ``seed``,
``return``, ``success``, ``length``), plus the model file, its step count, the seed and
``deterministic``.
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

import gymnasium as gym
import numpy as np

from agents.experiments.config import UserError
from agents.experiments.files import atomic_open

RESULT_COLUMNS = (
    "env", "shift", "level", "episodes", "mean_return", "std_return", "ci95_low", "ci95_high",
    "success_rate", "success_ci95_low", "success_ci95_high", "mean_length", "random_return",
    "random_success_rate", "normalized_score",
)
UNSHIFTED = "none"
EVAL_THREADS = 1  # batched one-step inference on CPU: more threads only add synchronisation
EVAL_ENVS = 64  # sub-envs stepped at once (one batched predict per step); benchmarks/bench_eval.py


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

    def key(self) -> str:
        """A stable text key of the shifts ("none" unshifted), e.g. for caches."""
        active = {k: v for k, v in sorted(self.shifts.items()) if v}
        return ",".join(f"{k}={v}" for k, v in active.items()) or UNSHIFTED


@dataclass(frozen=True)
class Episode:
    """One finished episode: its index in the setting, reset seed, return, success and length."""

    index: int
    seed: int
    ret: float
    success: bool | None
    length: int

    def record(self) -> dict[str, Any]:
        """The results.json record."""
        return {"index": self.index, "seed": self.seed, "return": self.ret, "success": self.success,
                "length": self.length}


@dataclass
class Result:
    """Statistics of the episodes of one setting (a row of results.csv)."""

    env: str
    shift: str
    level: int
    episodes: int
    mean_return: float
    std_return: float
    ci95_low: float
    ci95_high: float
    success_rate: float | None = None
    success_ci95_low: float | None = None
    success_ci95_high: float | None = None
    mean_length: float = 0.0
    random_return: float | None = None
    random_success_rate: float | None = None
    normalized_score: float | None = None
    episode_records: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The results.csv row (no per-episode records)."""
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


def scale_changing(env_id: str, shift: str) -> bool:
    """True if ``shift`` (a name or a combined "a=1,b=2" setting name) changes the task's scale on ``env_id``.

    Such settings are compared on success rate and normalized score only, never on raw return.
    """
    from envs import list_shifts

    available = list_shifts(env_id)
    names = [part.split("=")[0] for part in shift.split(",")]
    return any(name in available and available[name].changes_scale for name in names)


def has_success(env_id: str) -> bool:
    """True if episodes of ``env_id`` succeed or fail (MiniGrid/BabyAI), False for Atari."""
    from envs import is_atari

    return not is_atari(env_id)


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode ``index`` of an evaluation with base ``seed`` (same in every setting)."""
    return int(seed) + int(index)


class _Schedule:
    """Hands out episode indices 0..episodes-1 in order; None once all are taken."""

    def __init__(self, episodes: int) -> None:
        self.episodes, self.next = episodes, 0

    def take(self) -> int | None:
        index = self.next if self.next < self.episodes else None
        self.next += 1
        return index


class ScheduledReset(gym.Wrapper):
    """Resets its env with the seed of the next episode index of a shared :class:`_Schedule`.

    The seed a VecEnv passes is ignored, so an episode's layout depends on its index only, not on
    which sub-env runs it. ``index`` is the running episode's index (None: a spare episode that
    is not recorded, run only because its sub-env cannot pause).
    """

    def __init__(self, env: gym.Env, schedule: _Schedule, seed: int) -> None:
        super().__init__(env)
        self.schedule, self.base_seed = schedule, seed
        self.index: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.index = self.schedule.take()
        seed = episode_seed(self.base_seed, self.index) if self.index is not None else None
        return self.env.reset(seed=seed, options=options)


def _episode(index: int, seed: int, info: dict[str, Any], reward: float, with_success: bool) -> Episode:
    return Episode(index, episode_seed(seed, index), float(info["episode"]["r"]),
                   bool(reward > 0) if with_success else None, int(info["episode"]["l"]))


def run_episodes(
    model,
    env_id: str,
    shifts: dict[str, int] | None,
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    n_envs: int = EVAL_ENVS,
    on_step: Callable[[Any], None] | None = None,
) -> list[Episode]:
    """Exactly ``episodes`` paired episodes (see the module doc), in index order.

    ``model`` needs ``predict(obs, state, episode_start, deterministic) -> (actions, state)``
    (SB3 style; one batched no-grad call per step for all sub-envs). ``on_step(model)`` is called
    after every ``predict`` (e.g. to read the RIMs mask). The recurrent state is reset at episode
    starts and, for Atari, at every lost life, as in training (``envs.episode_starts``). A
    DummyVecEnv (MiniGrid/BabyAI; also below VecEnvWrappers) reseeds each sub-env at every episode
    start; other VecEnvs (Atari) run waves of ``n_envs`` episodes, each wave reset with
    ``venv.seed(seed + first index)``. Observations only pass from the VecEnv to ``predict`` (Box
    or Dict alike).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from envs import make_vec_env

    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    if n_envs < 1:
        raise UserError(f"n_envs must be >= 1, got {n_envs}")
    n = min(n_envs, episodes)
    venv = make_vec_env(env_id, n_envs=n, seed=seed, shifts=shifts or None, training=False,
                        instructions=reads_mission(model))
    with_success = has_success(env_id)
    try:
        if isinstance(venv.unwrapped, DummyVecEnv):  # also below VecEnvWrappers (e.g. observation adapters)
            found = _run_scheduled(model, venv, episodes, seed, deterministic, on_step, with_success)
        else:
            found = _run_waves(model, venv, episodes, seed, deterministic, on_step, with_success)
    finally:
        venv.close()
    return [found[i] for i in range(episodes)]


def _run_scheduled(model, venv, episodes: int, seed: int, deterministic: bool,
                   on_step: Callable[[Any], None] | None, with_success: bool) -> dict[int, Episode]:
    from envs import episode_starts

    schedule = _Schedule(episodes)
    inner = venv.unwrapped  # the DummyVecEnv; its sub-envs reset inside its step (auto-reset)
    wrappers = [ScheduledReset(env, schedule, seed) for env in inner.envs]
    inner.envs = wrappers
    found: dict[int, Episode] = {}
    obs = venv.reset()
    state, starts = None, np.ones(venv.num_envs, dtype=bool)
    while len(found) < episodes:
        running = [w.index for w in wrappers]  # before the step: a done sub-env resets inside it
        actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
        if on_step is not None:
            on_step(model)
        obs, rewards, dones, infos = venv.step(actions)
        for i in np.flatnonzero(dones):
            if running[i] is not None:
                found[running[i]] = _episode(running[i], seed, infos[i], float(rewards[i]), with_success)
        starts = episode_starts(dones, infos)
    return found


def _run_waves(model, venv, episodes: int, seed: int, deterministic: bool,
               on_step: Callable[[Any], None] | None, with_success: bool) -> dict[int, Episode]:
    from envs import episode_starts

    n = venv.num_envs
    found: dict[int, Episode] = {}
    for first in range(0, episodes, n):
        venv.seed(episode_seed(seed, first))  # sub-env i: seed + first + i
        obs = venv.reset()
        state, starts = None, np.ones(n, dtype=bool)
        pending = set(range(min(n, episodes - first)))
        while pending:
            actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            if on_step is not None:
                on_step(model)
            obs, rewards, dones, infos = venv.step(actions)
            for i in np.flatnonzero(dones):
                if i in pending and "episode" in infos[i]:
                    found[first + i] = _episode(first + int(i), seed, infos[i], float(rewards[i]), with_success)
                    pending.discard(int(i))
            starts = episode_starts(dones, infos)
    return found


def reads_mission(model) -> bool:
    """Whether ``model`` was built for dict observations with the mission (envs' ``instructions``)."""
    from gymnasium import spaces

    return isinstance(getattr(model, "observation_space", None), spaces.Dict)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate ``successes / n``."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(env_id: str, setting: Setting, episodes: Sequence[Episode]) -> Result:
    """Mean, sample std and Student-t 95% CI of the returns; success rate with its Wilson CI; mean length."""
    from scipy import stats

    returns = np.array([e.ret for e in episodes], dtype=np.float64)
    n = len(returns)
    mean = float(np.mean(returns))
    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else 0.0
    result = Result(env_id, setting.shift, setting.level, n, mean, std, mean - half, mean + half,
                    mean_length=float(np.mean([e.length for e in episodes])),
                    episode_records=[e.record() for e in episodes])
    flags = [e.success for e in episodes]
    if all(f is not None for f in flags):
        wins = int(sum(bool(f) for f in flags))
        result.success_rate = wins / n
        result.success_ci95_low, result.success_ci95_high = wilson_interval(wins, n)
    return result


def normalized_score(mean: float, random_mean: float, unshifted: float, random_unshifted: float) -> float | None:
    """``(mean - random_mean) / (unshifted - random_unshifted)``; None unless the model beats chance unshifted."""
    scale = unshifted - random_unshifted
    if not scale > 0:
        return None
    return (mean - random_mean) / scale


def add_normalized_scores(results: list[Result]) -> None:
    """Set each result's ``normalized_score`` from its ``random_return`` and the unshifted row's."""
    base = next(r for r in results if r.shift == UNSHIFTED)
    for r in results:
        if r.random_return is None or base.random_return is None:
            r.normalized_score = None
        else:
            r.normalized_score = normalized_score(r.mean_return, r.random_return, base.mean_return,
                                                  base.random_return)


def success_ci_half_width(results: Sequence[Result]) -> float | None:
    """The largest half-width of the success-rate CIs of ``results`` (None without success)."""
    widths = [(r.success_ci95_high - r.success_ci95_low) / 2 for r in results if r.success_rate is not None]
    return max(widths) if widths else None


def evaluate_model(
    model,
    env_id: str,
    settings: list[Setting],
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    n_envs: int = EVAL_ENVS,
    on_result: Callable[[Result], None] | None = None,
    baseline: Callable[[Setting], dict[str, Any]] | None = None,
) -> list[Result]:
    """Run every setting on the same episode seeds and return its Result.

    ``baseline(setting)`` gives the random policy's ``{"mean_return", "success_rate"}`` of a
    setting (see ``agents.experiments.baseline``); with it the normalized scores are set.
    """
    results = []
    for setting in settings:
        found = run_episodes(model, env_id, setting.shifts, episodes, seed, deterministic, n_envs)
        result = summarize(env_id, setting, found)
        if baseline is not None:
            reference = baseline(setting)
            result.random_return = reference["mean_return"]
            result.random_success_rate = reference["success_rate"]
        results.append(result)
        if on_result is not None:
            on_result(result)
    add_normalized_scores(results)
    return results


def write_csv_json(out_dir: str | os.PathLike, stem: str, columns: Sequence[str], rows: list[dict[str, Any]],
                   document: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (``rows`` restricted to ``columns``; None as an empty cell) and
    ``<stem>.json`` (``document`` plus the column list) into ``out_dir`` atomically; return their paths."""
    out = Path(out_dir)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    with atomic_open(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(json_path, "w") as f:
        json.dump({**document, "columns": list(columns)}, f, indent=1)
    return csv_path, json_path


def write_results(results: list[Result], out_dir: str | os.PathLike, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` into ``out_dir``; return their paths."""
    return write_csv_json(out_dir, "results", RESULT_COLUMNS, [r.row() for r in results],
                          {**meta, "results": [asdict(r) for r in results]})


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Load a ``results.json`` (UserError if missing, unreadable or written by an older version)."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
        data["results"][0]["success_rate"]  # noqa: B018 - presence check (older files lack it)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run `rims-rl evaluate` on that run first") from None
    except (KeyError, IndexError):
        raise UserError(f"{path} was written by an older rims-rl (no success_rate); run `rims-rl evaluate` "
                        f"on that run again") from None
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path} is not a results file ({type(e).__name__})") from None
    return data


METRICS = ("mean_return", "success_rate", "normalized_score")


def log_results_to_tensorboard(results: list[Result], tb_dir: str | os.PathLike, step: int,
                               ladder_png: str | os.PathLike | None = None) -> Path:
    """Write one scalar per setting and metric, ``eval/<shift>/level<L>/<metric>``, at the training
    ``step`` (so TensorBoard never smooths across levels; evaluating later checkpoints extends each
    curve), plus the ladder plot ``ladder_png`` as the image ``eval/ladder``."""
    from torch.utils.tensorboard import SummaryWriter

    tb_dir = Path(tb_dir)
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        for r in results:
            for metric in METRICS:
                value = getattr(r, metric)
                if value is not None:
                    writer.add_scalar(f"eval/{r.shift}/level{r.level}/{metric}", value, step)
        if ladder_png is not None:
            import imageio.v3 as iio

            image = iio.imread(Path(ladder_png))[..., :3]
            writer.add_image("eval/ladder", image, step, dataformats="HWC")
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
    """Print the results as a rich table (success and normalized score only where defined)."""
    from rich.table import Table

    table = Table(title=title, caption="norm. score = (R - R_random) / (R_unshifted - R_random unshifted); "
                                       "success CI: 95% Wilson")
    for col in ("shift", "level", "episodes", "mean return", "95% CI", "success", "success 95% CI",
                "random return", "norm. score"):
        table.add_column(col, justify="left" if col == "shift" else "right")
    for r in results:
        success_ci = ("-" if r.success_rate is None
                      else f"[{format_number(r.success_ci95_low)}, {format_number(r.success_ci95_high)}]")
        table.add_row(
            r.shift, str(r.level), str(r.episodes), format_number(r.mean_return),
            f"[{format_number(r.ci95_low)}, {format_number(r.ci95_high)}]", format_number(r.success_rate),
            success_ci, format_number(r.random_return), format_number(r.normalized_score),
        )
    table_console().print(table)
