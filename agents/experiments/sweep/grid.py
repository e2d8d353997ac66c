"""What a sweep runs: grid files, the jobs of a grid, and the plan of its runs (no Ray, no torch).

A grid is every job (an env with its own budget, overrides and config) x core x seed of one config.
:func:`plan_sweep` resolves and checks every run's config and run dir before anything runs.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.checks import check_core_name, check_episodes
from agents.experiments.config import EVAL_SEED, flatten, read_yaml
from agents.experiments.evaluation.results import RESULTS_FILE, read_results
from agents.experiments.runs import EVAL_DIR, FINAL_MODEL, run_dir_for, run_state
from agents.experiments.validation import resolve_config, run_config
from rims_rl.errors import UserError

GRID_KEYS = ("envs", "tasks", "cores", "seeds", "config", "overrides", "timesteps")
JOB_KEYS = ("env", "timesteps", "overrides", "config")  # the keys of one entry of a grid file's `tasks`


@dataclass
class Job:
    """One env of a grid (an entry of a grid file's ``tasks``) with its own budget, overrides (applied
    after the grid's) and config."""

    env: str
    timesteps: int | None = None
    overrides: list[str] = field(default_factory=list)
    config: str | None = None


@dataclass
class Grid:
    """What to run: every env (or job) x core x seed of one config (a preset or YAML file plus overrides).

    ``envs`` None = the config's env; ``cores``/``seeds`` None = the config's core/seed. ``jobs`` (a grid
    file's ``tasks``, instead of ``envs``) gives each env its own budget, overrides and config; ``envs``
    then picks some of the jobs (``--env``).
    """

    envs: list[str] | None = None
    jobs: list[Job] | None = None
    cores: list[str] | None = None
    seeds: list[int] | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    timesteps: int | None = None


def read_grid_file(path: str | os.PathLike) -> Grid:
    """A grid file (YAML) with some of the keys :data:`GRID_KEYS`; UserError for anything else.

    ``overrides`` is a mapping of config keys (``ppo.learning_rate: 1e-3``) or a list of
    ``key=value`` strings; a single env, core or seed may be given without a list.
    """
    path = Path(path)
    data = read_yaml(path, "grid file")
    if not isinstance(data, dict):
        raise UserError(f"grid file {path} must be a mapping with keys {', '.join(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise UserError(f"grid file {path}: unknown key {unknown[0]!r}; valid keys: {', '.join(GRID_KEYS)}")

    def as_list(key: str) -> list | None:
        value = data.get(key)
        if value is None:
            return None
        value = value if isinstance(value, list) else [value]
        if not value:
            raise UserError(f"grid file {path}: {key} is an empty list; give at least one value or drop the key")
        return value

    overrides = _read_overrides(data.get("overrides"), f"grid file {path}")
    seeds = as_list("seeds")
    if seeds is not None and not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"grid file {path}: seeds must be integers, got {seeds}")
    timesteps = _read_timesteps(data.get("timesteps"), f"grid file {path}")
    config = _config_beside(data.get("config"), path)
    envs, cores = as_list("envs"), as_list("cores")
    jobs = _read_jobs(data.get("tasks"), path) if "tasks" in data else None
    if jobs is not None and envs is not None:
        raise UserError(f"grid file {path}: give envs or tasks, not both (tasks name their own env)")
    return Grid(envs=[str(e) for e in envs] if envs else None, jobs=jobs,
                cores=[str(c) for c in cores] if cores else None,
                seeds=seeds, config=config, overrides=list(overrides), timesteps=timesteps)


def _read_overrides(value: Any, where: str) -> list[str]:
    """``overrides`` of a grid or job: a mapping of config keys or a list of ``key=value`` strings."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{key}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, v in flatten(value)]
    if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise UserError(f"{where}: overrides must be a mapping of config keys or a list of key=value")
    return list(value)


def _read_timesteps(value: Any, where: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise UserError(f"{where}: timesteps must be an integer, got {value!r}")
    return value


def _config_beside(config: Any, grid_path: Path) -> str | None:
    """A config file named in a grid file is relative to the grid file (a preset name stays as it is)."""
    if config is None:
        return None
    candidate = grid_path.parent / str(config)
    return str(candidate) if candidate.is_file() else str(config)


def _read_jobs(value: Any, path: Path) -> list[Job]:
    """The ``tasks`` list of a grid file: mappings with ``env`` and optionally the other :data:`JOB_KEYS`."""
    if not isinstance(value, list) or not value:
        raise UserError(f"grid file {path}: tasks must be a non-empty list of mappings with an env")
    jobs: list[Job] = []
    for i, item in enumerate(value):
        where = f"grid file {path}: task {i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("env"), str):
            raise UserError(f"{where} must be a mapping with an env, got {item!r}")
        unknown = sorted(set(item) - set(JOB_KEYS))
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(JOB_KEYS)}")
        if any(job.env == item["env"] for job in jobs):
            raise UserError(f"{where}: env {item['env']!r} is named by an earlier task")
        jobs.append(Job(env=item["env"], timesteps=_read_timesteps(item.get("timesteps"), where),
                        overrides=_read_overrides(item.get("overrides"), where),
                        config=_config_beside(item.get("config"), path)))
    return jobs


def merge_grid(file_grid: Grid | None, **flags: Any) -> Grid:
    """A copy of the grid file's values, each replaced by the flag of the same name when that is given
    (not None/empty).

    ``overrides`` (``--set``) are applied after the grid file's.
    """
    grid = dataclasses.replace(file_grid) if file_grid is not None else Grid()
    if flags.get("timesteps") is not None and grid.jobs:  # an explicit budget applies to every job
        grid.jobs = [dataclasses.replace(job, timesteps=None) for job in grid.jobs]
    for name, value in flags.items():
        if name == "overrides":
            grid.overrides = [*grid.overrides, *(value or [])]
        elif value is not None and value != []:
            setattr(grid, name, list(value) if isinstance(value, (list, tuple)) else value)
    for name in ("envs", "cores", "seeds"):
        if getattr(grid, name) == []:
            raise UserError(f"{name} is an empty list; give at least one")
    return grid


def grid_jobs(grid: Grid) -> list[Job]:
    """The envs of ``grid`` as jobs: its ``jobs`` (those named by ``envs`` when both are set), or one
    job per env of ``envs`` (None: the config's env) with the grid's own budget."""
    if grid.jobs is None:
        return [Job(env=env) for env in grid.envs or [None]]  # type: ignore[list-item]
    if grid.envs is None:
        return grid.jobs
    names = [job.env for job in grid.jobs]
    unknown = [e for e in grid.envs if e not in names]
    if unknown:
        raise UserError(f"--env {unknown[0]} is not a task of the grid file; its tasks: {', '.join(names)}")
    return [job for job in grid.jobs if job.env in grid.envs]


@dataclass
class PlannedRun:
    """One run of the sweep: its resolved config, run dir, and what is left to do."""

    cfg: dict
    run_dir: Path
    state: str  # new | resume | done (see runs.run_state)
    evaluate: bool = False  # evaluate after training (the run has no up-to-date results)

    @property
    def name(self) -> str:
        return f"{self.cfg['env']} {self.cfg['core']} seed{self.cfg['seed']}"

    @property
    def todo(self) -> bool:
        return self.state != "done" or self.evaluate


@dataclass
class RunOutcome:
    """How one run of the sweep ended."""

    run: PlannedRun
    status: str  # done | failed | interrupted | skipped
    steps: int | None = None
    reason: str | None = None


def is_evaluated(run_dir: Path, episodes: int) -> bool:
    """True if ``<run>/eval/results.json`` (of this rims-rl version) was written after ``model.zip`` with
    ``episodes`` per setting."""
    results, model = run_dir / EVAL_DIR / RESULTS_FILE, run_dir / FINAL_MODEL
    if not results.is_file() or not model.is_file() or results.stat().st_mtime < model.stat().st_mtime:
        return False
    try:
        meta = read_results(results)
    except UserError:
        return False
    return meta.get("episodes", episodes) == episodes


def plan_sweep(grid: Grid, logdir: str | os.PathLike, evaluate: bool = False,
               episodes: int | None = None) -> list[PlannedRun]:
    """Every (env, core, seed) of ``grid`` with its config and state; UserError before anything runs.

    Checks every env, core, config key and value, and every existing run dir (a different config
    in it is refused). Nothing is created.
    """
    if episodes is not None:
        check_episodes(episodes, EVAL_SEED)  # the evaluation after training must not fail on them
    for core in grid.cores or ():
        check_core_name(core)
    plan: list[PlannedRun] = []
    planned: set[Path] = set()  # a set, not a scan of the plan: a 20,000-run grid plans in linear time
    for job in grid_jobs(grid):
        base = resolve_config(job.config or grid.config, [*grid.overrides, *job.overrides], env=job.env,
                              timesteps=job.timesteps if job.timesteps is not None else grid.timesteps)
        for core in grid.cores or [base["core"]]:
            for seed in grid.seeds if grid.seeds is not None else [base["seed"]]:
                cfg = run_config(base, core, seed)
                run_dir = run_dir_for(logdir, cfg["env"], core, seed)
                if run_dir in planned:
                    continue  # the same env named twice
                planned.add(run_dir)
                state = run_state(run_dir, cfg)
                n = episodes if episodes is not None else cfg["eval"]["episodes"]
                plan.append(PlannedRun(cfg, run_dir, state, evaluate and not (
                    state == "done" and is_evaluated(run_dir, n))))
    return plan
