"""What a sweep runs: grid files, the jobs of a grid, and the plan of its runs (no Ray, no torch).

A grid is every job (an env with its own budget, overrides and config) x label x seed of one config. A
label is a core (named by itself) or a named variant of one (a grid file's ``labels``: its core, config
and overrides, e.g. an ablation ``rims-k3`` or a parameter-matched ``lstm-matched``).
:func:`plan_sweep` resolves and checks every run's config and run dir before anything runs.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.checks import check_core_name, check_episodes, check_label, grid_seeds
from agents.experiments.config import EVAL_SEED, flatten, read_yaml
from agents.experiments.evaluation.ladder import ladder_settings
from agents.experiments.evaluation.results import RESULTS_FILE, read_results
from agents.experiments.findings import Primary, parse_primary
from agents.experiments.matching import matched_config
from agents.experiments.runs import EVAL_DIR, FINAL_MODEL, read_run_config, run_dir_for, run_state
from agents.experiments.validation import resolve_config, run_config
from rims_rl.errors import UserError

GRID_KEYS = ("envs", "tasks", "cores", "labels", "seeds", "config", "overrides", "timesteps", "primary")
JOB_KEYS = ("env", "timesteps", "overrides", "config", "labels")  # the keys of one entry of a grid file's `tasks`
VARIANT_KEYS = ("core", "config", "set", "overrides")  # the keys of one entry of a grid file's `labels`


@dataclass
class Variant:
    """One label of a grid: a core with its own config (instead of the job's) and overrides (applied after
    the grid's and the job's)."""

    label: str
    core: str
    overrides: list[str] = field(default_factory=list)
    config: str | None = None


@dataclass
class Job:
    """One env of a grid (an entry of a grid file's ``tasks``) with its own budget, overrides (applied
    after the grid's) and config."""

    env: str
    timesteps: int | None = None
    overrides: list[str] = field(default_factory=list)
    config: str | None = None
    label_overrides: dict[str, list[str]] = field(default_factory=dict)  # per label, applied after all others


@dataclass
class Grid:
    """What to run: every env (or job) x label x seed of one config (a preset or YAML file plus overrides).

    ``envs`` None = the config's env; ``cores``/``seeds`` None = the config's core/seed. ``jobs`` (a grid
    file's ``tasks``, instead of ``envs``) gives each env its own budget, overrides and config; ``envs``
    then picks some of the jobs (``--env``). ``variants`` (a grid file's ``labels``) add named variants
    beside the plain ``cores``; ``labels`` (``--label``) picks some of them, or, without variants, names
    the runs of the one core. ``primary``: the comparison the study is planned to answer (for its report).
    ``n_envs`` (``--n-envs``, None = each run's config) replaces every run's ``n_envs``, after all overrides.
    """

    envs: list[str] | None = None
    jobs: list[Job] | None = None
    cores: list[str] | None = None
    seeds: list[int] | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    timesteps: int | None = None
    n_envs: int | None = None
    variants: list[Variant] | None = None
    labels: list[str] | None = None
    primary: Primary | None = None
    tuned: dict[str, tuple[str, list[str]]] | None = None  # --tuned: per label, its tuned core and values


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
    seeds = grid_seeds(data.get("seeds"), f"grid file {path}")
    timesteps = _read_timesteps(data.get("timesteps"), f"grid file {path}")
    config = _config_beside(data.get("config"), path)
    envs, cores = as_list("envs"), as_list("cores")
    jobs = _read_jobs(data.get("tasks"), path) if "tasks" in data else None
    if jobs is not None and envs is not None:
        raise UserError(f"grid file {path}: give envs or tasks, not both (tasks name their own env)")
    cores = [check_core_name(str(c)) for c in cores] if cores else None
    variants = _read_variants(data["labels"], path, cores or []) if data.get("labels") is not None else None
    primary = parse_primary(data["primary"], f"grid file {path}") if data.get("primary") is not None else None
    return Grid(envs=[str(e) for e in envs] if envs else None, jobs=jobs, cores=cores,
                seeds=seeds, config=config, overrides=list(overrides), timesteps=timesteps, variants=variants,
                primary=primary)


def _read_variants(value: Any, path: Path, cores: list[str]) -> list[Variant]:
    """The ``labels`` mapping of a grid file: label -> {core, config, set/overrides}."""
    if not isinstance(value, dict) or not value:
        raise UserError(f"grid file {path}: labels must be a mapping of label names to {{core, config, set}}")
    variants = []
    for label, item in value.items():
        where = f"grid file {path}: label {label!r}"
        check_label(label, where)
        if label in cores:
            raise UserError(f"{where} is also a core of the grid; name the variant differently")
        if not isinstance(item, dict) or not isinstance(item.get("core"), str):
            raise UserError(f"{where} must be a mapping with a core, got {item!r}")
        unknown = sorted(set(item) - set(VARIANT_KEYS))
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(VARIANT_KEYS)}")
        if "set" in item and "overrides" in item:
            raise UserError(f"{where}: give set or overrides (the same thing), not both")
        variants.append(Variant(label, check_core_name(item["core"]),
                                _read_overrides(item.get("set", item.get("overrides")), where),
                                _config_beside(item.get("config"), path)))
    return variants


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
                        config=_config_beside(item.get("config"), path),
                        label_overrides=_read_label_overrides(item.get("labels"), where)))
    return jobs


def _read_label_overrides(value: Any, where: str) -> dict[str, list[str]]:
    """A job's ``labels``: label -> {set: ...} (or overrides), what that label changes on this env only (e.g.
    the RIMs instruction row where the task has a mission)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: labels must be a mapping of labels to {{set: ...}}, got {value!r}")
    out = {}
    for label, item in value.items():
        if not isinstance(item, dict) or not set(item) <= {"set", "overrides"} or len(item) != 1:
            raise UserError(f"{where}: labels.{label} must be {{set: {{key: value, ...}}}}, got {item!r}")
        out[str(label)] = _read_overrides(next(iter(item.values())), f"{where}: labels.{label}")
    return out


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
    for name in ("envs", "cores", "seeds", "labels"):
        if getattr(grid, name) == []:
            raise UserError(f"{name} is an empty list; give at least one")
    return grid


def grid_variants(grid: Grid, base_core: str) -> list[Variant]:
    """The labels of ``grid``: a plain variant per core (labelled by itself) and the named variants; with
    ``labels`` given, those of them (without named variants, ``labels`` names the runs of the one core)."""
    plain = [Variant(core, core) for core in grid.cores or ([] if grid.variants else [base_core])]
    if grid.labels is None:
        return plain + (grid.variants or [])
    if not grid.variants:
        if len(plain) != 1 or len(grid.labels) != 1:
            raise UserError(f"--label {' '.join(grid.labels)}: one label names the runs of one --core; the grid "
                            f"has {len(plain)} core(s) and no labels of its own")
        return [Variant(check_label(grid.labels[0]), plain[0].core)]
    known = {v.label: v for v in plain + grid.variants}
    unknown = [label for label in grid.labels if label not in known]
    if unknown:
        raise UserError(f"--label {unknown[0]} is not a label of the grid file; its labels: {', '.join(known)}")
    return [known[label] for label in grid.labels]


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
        return f"{self.cfg['env']} {self.cfg.get('label', self.cfg['core'])} seed{self.cfg['seed']}"

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
    """True if ``<run>/eval/results.json`` (of this rims-rl version) was written after ``model.zip`` and
    holds every setting of the run's ladder (its config's ``eval.sweep``) with ``episodes`` episodes each.

    ``evaluate`` writes results.json last, after the plot and TensorBoard, so an evaluation that failed
    leaves none (or the older one); a file that lacks settings or episodes is no finished evaluation
    either: the sweep evaluates such a run again.
    """
    results, model = run_dir / EVAL_DIR / RESULTS_FILE, run_dir / FINAL_MODEL
    if not results.is_file() or not model.is_file() or results.stat().st_mtime < model.stat().st_mtime:
        return False
    try:
        meta = read_results(results)
        cfg = read_run_config(run_dir)
        ladder = {(s.shift, s.level) for s in ladder_settings(cfg["env"], cfg["eval"]["sweep"])}
    except UserError:
        return False
    found = {(r["shift"], r["level"]) for r in meta["results"] if r["episodes"] == episodes}
    return meta.get("episodes", episodes) == episodes and ladder <= found


def plan_sweep(grid: Grid, logdir: str | os.PathLike, evaluate: bool = False,
               episodes: int | None = None) -> list[PlannedRun]:
    """Every (env, label, seed) of ``grid`` with its config and state; UserError before anything runs.

    Checks every env, core, label, config key and value, and every existing run dir (a different config
    in it is refused). Nothing is created. A variant with ``match: params`` is sized against the job's
    ``rims`` variant (the one labelled ``rims``, else the only RIMs variant) where it has one.
    """
    if episodes is not None:
        check_episodes(episodes, EVAL_SEED)  # the evaluation after training must not fail on them
    for core in grid.cores or ():
        check_core_name(core)
    plan: list[PlannedRun] = []
    planned: set[Path] = set()  # a set, not a scan of the plan: a 20,000-run grid plans in linear time
    for job in grid_jobs(grid):
        for variant, base in job_configs(grid, job):
            for seed in grid.seeds if grid.seeds is not None else [base["seed"]]:
                cfg = run_config(base, variant.core, seed, variant.label)
                run_dir = run_dir_for(logdir, cfg["env"], variant.label, seed)
                if run_dir in planned:
                    continue  # the same env named twice
                planned.add(run_dir)
                state = run_state(run_dir, cfg)
                n = episodes if episodes is not None else cfg["eval"]["episodes"]
                plan.append(PlannedRun(cfg, run_dir, state, evaluate and not (
                    state == "done" and is_evaluated(run_dir, n))))
    return plan


def tuned_overrides(values: dict[str, dict[str, Any]], cores: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """``Grid.tuned`` from a tune's values (label -> {dotted key: value}) and the core each label was tuned as."""
    return {label: (cores[label], _read_overrides(v, f"tuned values of {label}")) for label, v in values.items()}


def _key(override: str) -> str:
    return override.split("=", 1)[0].strip()


def _tuned_values(grid: Grid, job: Job, variant: Variant, required: bool) -> list[str]:
    """``variant``'s tuned values (``--tuned``) as overrides. UserError for a label without any (when
    ``required``), for one tuned as another core, and for a tuned key that the grid, the task, the label or
    ``--set`` sets as well (which would be ambiguous)."""
    if grid.tuned is None or (variant.label not in grid.tuned and not required):
        return []
    if variant.label not in grid.tuned:
        raise UserError(f"--tuned has no values for label {variant.label}; its labels: {', '.join(grid.tuned)}")
    core, overrides = grid.tuned[variant.label]
    if core != variant.core:
        raise UserError(f"--tuned: label {variant.label} was tuned as core {core}, not {variant.core}")
    tuned = {_key(o) for o in overrides}
    for key in map(_key, [*grid.overrides, *job.overrides, *variant.overrides]):
        clash = next((t for t in tuned if t == key or t.startswith(f"{key}.") or key.startswith(f"{t}.")), None)
        if clash:
            raise UserError(f"{clash} of label {variant.label} is tuned (--tuned) and set by the grid, its task, the "
                            f"label or --set as well; drop one of them")
    return overrides


def job_configs(grid: Grid, job: Job) -> list[tuple[Variant, dict]]:
    """Each label of ``job`` with its resolved config (seed aside), matched in size where its ``match`` asks."""
    timesteps = job.timesteps if job.timesteps is not None else grid.timesteps
    default = resolve_config(job.config or grid.config, [*grid.overrides, *job.overrides], env=job.env,
                             timesteps=timesteps, n_envs=grid.n_envs)
    labels = grid_variants(grid, default["core"])
    if len({v.label for v in labels}) != len(labels):
        raise UserError(f"labels repeat in the grid: {', '.join(v.label for v in labels)}")
    unknown = sorted(set(job.label_overrides) - {v.label for v in labels})
    if unknown and grid.labels is None:
        raise UserError(f"task {job.env}: labels.{unknown[0]} is not a label of the grid; its labels: "
                        f"{', '.join(v.label for v in labels)}")
    def resolve(variant: Variant, tuned_required: bool = True) -> dict:
        base = resolve_config(variant.config or job.config or grid.config,
                              [*grid.overrides, *job.overrides, *variant.overrides,
                               *_tuned_values(grid, job, variant, tuned_required),
                               *job.label_overrides.get(variant.label, [])], env=job.env, timesteps=timesteps,
                              n_envs=grid.n_envs)
        return run_config(base, variant.core, base["seed"], variant.label)

    resolved = [(variant, resolve(variant)) for variant in labels]
    reference = None
    if any(cfg.get("match", "none") != "none" for _, cfg in resolved):
        # the RIMs core to match is the whole grid's, whichever labels this sweep picks (--label)
        every = resolved if grid.labels is None else [
            (variant, resolve(variant, tuned_required=False))
            for variant in grid_variants(dataclasses.replace(grid, labels=None), default["core"])
            if variant.core == "rims"]
        rims = [cfg for v, cfg in every if v.core == "rims"]
        reference = next((cfg for v, cfg in every if v.label == "rims"), rims[0] if len(rims) == 1 else None)
    return [(variant, matched_config(cfg, reference)) for variant, cfg in resolved]
