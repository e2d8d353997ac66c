"""The ``sweep`` command: many runs at once on Ray, one task per (env, core, seed).

Each task trains one ordinary run dir ``<logdir>/<env>/<core>/seed<N>/`` through
:func:`agents.experiments.train.train_run` (so ``evaluate``, ``compare``, ``record`` and
TensorBoard work on it unchanged), its output going to ``<run>/train.log``; with ``evaluate`` it
then evaluates the run in the same task, and the sweep ends with ``compare`` per env.

- Validation first: the grid, every run's config and every existing run dir are checked before Ray
  starts, so a bad grid costs one line and no start-up.
- Resumable: finished runs (``model.zip``) are skipped, interrupted ones resume from
  ``checkpoints/last.zip``; a run dir holding another config is refused (one line).
- Faults: a task that raises or whose worker dies is retried by Ray (``retries`` times) and resumes
  from its checkpoint; a user error (a corrupt model, a run dir locked by another process) fails the
  run at once. One failed run never stops the others.
- Ray runs locally by default (``workers`` CPUs, one torch thread and one CPU per run), or joins a
  cluster at ``address``; run dirs must then lie on a file system every node sees at the same path.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from agents.experiments.config import CORES, UserError, first_line
from agents.experiments.devices import check_device_name, resolve_device
from agents.experiments.runs import (CHECKPOINT, EVAL_DIR, FINAL_MODEL, TRAIN_LOG, env_dirname, read_num_timesteps,
                                     run_dir_for, run_dir_lock, run_state)
from agents.experiments.train import EVAL_SEED, Interrupted, _run_config, check_logdir, resolve_config

GRID_KEYS = ("envs", "tasks", "cores", "seeds", "config", "overrides", "timesteps")
TASK_KEYS = ("env", "timesteps", "overrides", "config")
RESULTS_FILE = "results.json"


# ---------------------------------------------------------------- the grid

@dataclass
class Task:
    """One env of a grid with its own budget, overrides (applied after the grid's) and config."""

    env: str
    timesteps: int | None = None
    overrides: list[str] = field(default_factory=list)
    config: str | None = None


@dataclass
class Grid:
    """What to run: every env (or task) x core x seed of one config (a preset or YAML file plus overrides).

    ``envs`` None = the config's env; ``cores``/``seeds`` None = the config's core/seed. ``tasks``
    (instead of ``envs``) gives each env its own budget, overrides and config; ``envs`` then picks
    some of the tasks (``--env``).
    """

    envs: list[str] | None = None
    tasks: list[Task] | None = None
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
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read grid file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"grid file {path} is not valid YAML: {str(e).strip().splitlines()[0]}") from None
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
    tasks = _read_tasks(data.get("tasks"), path) if "tasks" in data else None
    if tasks is not None and envs is not None:
        raise UserError(f"grid file {path}: give envs or tasks, not both (tasks name their own env)")
    return Grid(envs=[str(e) for e in envs] if envs else None, tasks=tasks,
                cores=[str(c) for c in cores] if cores else None,
                seeds=seeds, config=config, overrides=list(overrides), timesteps=timesteps)


def _read_overrides(value: Any, where: str) -> list[str]:
    """``overrides`` of a grid or task: a mapping of config keys or a list of ``key=value`` strings."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{key}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, v in _flatten(value)]
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


def _read_tasks(value: Any, path: Path) -> list[Task]:
    """The ``tasks`` list of a grid file: mappings with ``env`` and optionally the other :data:`TASK_KEYS`."""
    if not isinstance(value, list) or not value:
        raise UserError(f"grid file {path}: tasks must be a non-empty list of mappings with an env")
    tasks: list[Task] = []
    for i, item in enumerate(value):
        where = f"grid file {path}: task {i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("env"), str):
            raise UserError(f"{where} must be a mapping with an env, got {item!r}")
        unknown = sorted(set(item) - set(TASK_KEYS))
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(TASK_KEYS)}")
        if any(t.env == item["env"] for t in tasks):
            raise UserError(f"{where}: env {item['env']!r} is named by an earlier task")
        tasks.append(Task(env=item["env"], timesteps=_read_timesteps(item.get("timesteps"), where),
                          overrides=_read_overrides(item.get("overrides"), where),
                          config=_config_beside(item.get("config"), path)))
    return tasks


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def merge_grid(file_grid: Grid | None, **flags: Any) -> Grid:
    """A copy of the grid file's values, each replaced by the flag of the same name when that is given
    (not None/empty).

    ``overrides`` (``--set``) are applied after the grid file's.
    """
    grid = dataclasses.replace(file_grid) if file_grid is not None else Grid()
    if flags.get("timesteps") is not None and grid.tasks:  # an explicit budget applies to every task
        grid.tasks = [dataclasses.replace(task, timesteps=None) for task in grid.tasks]
    for name, value in flags.items():
        if name == "overrides":
            grid.overrides = [*grid.overrides, *(value or [])]
        elif value is not None and value != []:
            setattr(grid, name, list(value) if isinstance(value, (list, tuple)) else value)
    for name in ("envs", "cores", "seeds"):
        if getattr(grid, name) == []:
            raise UserError(f"{name} is an empty list; give at least one")
    return grid


# ---------------------------------------------------------------- the plan (no Ray)

def grid_tasks(grid: Grid) -> list[Task]:
    """The envs of ``grid`` as tasks: its ``tasks`` (those named by ``envs`` when both are set), or one
    task per env of ``envs`` (None: the config's env) with the grid's own budget."""
    if grid.tasks is None:
        return [Task(env=env) for env in grid.envs or [None]]  # type: ignore[list-item]
    if grid.envs is None:
        return grid.tasks
    names = [t.env for t in grid.tasks]
    unknown = [e for e in grid.envs if e not in names]
    if unknown:
        raise UserError(f"--env {unknown[0]} is not a task of the grid file; its tasks: {', '.join(names)}")
    return [t for t in grid.tasks if t.env in grid.envs]


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


def is_evaluated(run_dir: Path, episodes: int) -> bool:
    """True if ``<run>/eval/results.json`` (of this rims-rl version) was written after ``model.zip`` with
    ``episodes`` per setting."""
    from agents.experiments.evaluation import read_results

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
        from agents.experiments.commands import check_episodes

        check_episodes(episodes, EVAL_SEED)  # the evaluation after training must not fail on them
    for core in grid.cores or ():
        if core not in CORES:
            raise UserError(f"unknown core {core!r}; valid cores: {', '.join(CORES)}")
    plan: list[PlannedRun] = []
    for task in grid_tasks(grid):
        base = resolve_config(task.config or grid.config, [*grid.overrides, *task.overrides], env=task.env,
                              timesteps=task.timesteps if task.timesteps is not None else grid.timesteps)
        for core in grid.cores or [base["core"]]:
            for seed in grid.seeds if grid.seeds is not None else [base["seed"]]:
                cfg = _run_config(base, core, seed)
                run_dir = run_dir_for(logdir, cfg["env"], core, seed)
                if any(p.run_dir == run_dir for p in plan):
                    continue  # the same env named twice
                state = run_state(run_dir, cfg)
                n = episodes if episodes is not None else cfg["eval"]["episodes"]
                plan.append(PlannedRun(cfg, run_dir, state, evaluate and not (
                    state == "done" and is_evaluated(run_dir, n))))
    return plan


# ---------------------------------------------------------------- the Ray side

class ProgressBoard:
    """A Ray actor that collects every run's step count; the driver reads it for the live line."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}
        self.running: set[str] = set()

    def report(self, name: str, steps: int, running: bool = True) -> None:
        self.steps[name] = int(steps)
        (self.running.add if running else self.running.discard)(name)

    def snapshot(self) -> tuple[dict[str, int], set[str]]:
        return dict(self.steps), set(self.running)


class BoardClient:
    """A task's handle on the sweep's :class:`ProgressBoard`, looked up by name at the first report.

    The driver creates the board after submitting the tasks, so that the tasks, not the board, get the
    workers ``ray.init`` starts ahead; a report made before the board is registered is skipped (the
    next one, after the following rollout, gets through). ``board_name`` None: the sweep shows no live
    line, so there is no board and reports go nowhere."""

    def __init__(self, board_name: str | None) -> None:
        self.board_name = board_name
        self.actor: Any = None

    def report(self, name: str, steps: int, running: bool = True) -> None:
        if self.board_name is None:
            return
        if self.actor is None:
            import ray

            try:
                self.actor = ray.get_actor(self.board_name)
            except ValueError:  # not registered yet
                return
        self.actor.report.remote(name, steps, running)


def report_progress_callback(board: Any, name: str) -> Any:
    """An SB3 callback that sends the step count to the board (a :class:`BoardClient`) after every rollout."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ReportProgress(BaseCallback):
        def _on_training_start(self) -> None:
            board.report(name, self.model.num_timesteps)

        def _on_rollout_end(self) -> None:
            board.report(name, self.model.num_timesteps)

        def _on_step(self) -> bool:
            return True

    return ReportProgress()


def run_task(cfg: dict, run_dir: str, device: str, evaluation: dict | None, board: Any, name: str) -> dict:
    """One sweep task (runs in a Ray worker): train ``run_dir`` to its budget, then evaluate it if asked.

    Holds the run dir's lock throughout; all output goes to ``<run>/train.log``. A finished run is
    not trained again, an interrupted one resumes from its checkpoint (also on a Ray retry).
    Returns ``{"status": "done" | "failed" | "interrupted", "steps", "reason"}``; an unexpected
    exception is raised so that Ray retries the task.
    """
    from agents.experiments import commands
    from agents.experiments.train import train_run

    path = Path(run_dir)
    t0 = time.time()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_dir_lock(path))
            path.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(path / TRAIN_LOG, "a", buffering=1))
        except (UserError, OSError) as e:
            return {"status": "failed", "reason": first_line(e), "steps": None}
        stack.enter_context(contextlib.redirect_stdout(log))
        stack.enter_context(contextlib.redirect_stderr(log))
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} sweep task {name} (pid {os.getpid()}, device {device}, "
              f"Ray node {_node_id()})")
        try:
            if not (path / FINAL_MODEL).is_file():
                train_run(cfg, path, resume=True, progress=True, device=device,
                          callbacks=[report_progress_callback(board, name)])
            steps = read_num_timesteps(path / FINAL_MODEL)
            board.report(name, steps, False)
            if evaluation is not None:
                commands.evaluate(path, shifts=evaluation["shifts"], episodes=evaluation["episodes"], device=device)
        except ValueError as e:  # a UserError or envs'/rims_rl's one-line ValueError: a retry would change nothing
            print(f"failed: {first_line(e)}")
            board.report(name, 0, False)
            return {"status": "failed", "reason": first_line(e), "steps": None}
        except (Interrupted, KeyboardInterrupt) as e:
            print(f"interrupted: {e or type(e).__name__}")
            steps = _steps_in(path / CHECKPOINT)
            saved = f"checkpoint at step {steps}" if steps is not None else "no checkpoint yet"
            return {"status": "interrupted", "reason": f"stopped by Ctrl-C; {saved}", "steps": steps}
        except BaseException:
            traceback.print_exc()
            print("the task failed; Ray retries it while retries are left (resuming from the checkpoint)")
            raise
        print(f"done: {steps} steps in {time.time() - t0:.1f} s")
    return {"status": "done", "reason": None, "steps": steps}


def _node_id() -> str:
    """The Ray node running this task; "-" outside Ray (a direct call), without starting Ray there
    (``ray.get_runtime_context`` would start a local instance and leave it running)."""
    import ray

    if not ray.is_initialized():
        return "-"
    return ray.get_runtime_context().get_node_id()


def _task_failure_reason(error: BaseException) -> str:
    """One line for a Ray error of a task: the remote exception, or that the worker died."""
    import ray.exceptions as rex

    if isinstance(error, rex.RayTaskError):
        cause = error.cause if getattr(error, "cause", None) is not None else error
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()
    if isinstance(error, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError)):
        return f"its worker process died ({type(error).__name__}) and no retries were left"
    return first_line(error)


def _start_ray(address: str | None, workers: int) -> None:
    import logging

    import ray

    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token warning for a private local instance
        # Workers import this package like the driver does: an installed package needs nothing, a
        # source checkout run with `python train_agent.py` gets its root on the workers' path.
        # Set in the environment the local instance's processes inherit, not as a runtime_env: workers
        # of a runtime_env cannot be the ones Ray starts ahead with ray.init, so every task waited for
        # a new worker process.
        root = str(Path(__file__).resolve().parents[2])
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, before) if p)
        try:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        finally:
            if before is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = before
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--address {address}: cannot join a Ray cluster there ({first_line(e)})") from None


# ---------------------------------------------------------------- the driver

@dataclass
class RunOutcome:
    """How one run of the sweep ended."""

    run: PlannedRun
    status: str  # done | failed | interrupted | skipped
    steps: int | None = None
    reason: str | None = None


class SweepFailed(Exception):
    """Some runs of a sweep failed (the others finished); exit code 1."""


def sweep(
    grid: Grid,
    logdir: str | os.PathLike = "runs",
    evaluate: bool = False,
    episodes: int | None = None,
    workers: int | None = None,
    address: str | None = None,
    device: str | None = None,
    gpus_per_run: float | None = None,
    retries: int = 1,
    progress: bool = True,
) -> list[RunOutcome]:
    """The ``sweep`` command: train (and evaluate) every run of ``grid`` as Ray tasks, then compare per env.

    ``device``: auto, cpu or cuda for every run (None: the config's ``device``). Raises
    :class:`SweepFailed` naming the failed runs after all others ended, and
    :class:`agents.experiments.train.Interrupted` on Ctrl-C once the running runs have checkpointed.
    """
    if retries < 0:
        raise UserError(f"--retries must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if gpus_per_run is not None and gpus_per_run < 0:
        raise UserError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
    if device is not None:
        check_device_name(device)
    check_logdir(logdir)
    logdir = Path(logdir).resolve() if address is None else Path(logdir).absolute()
    plan = plan_sweep(grid, logdir, evaluate, episodes)
    device = sweep_device(device, plan, address, gpus_per_run)
    todo = [p for p in plan if p.todo]
    print(f"rims-rl sweep: {len(plan)} runs ({len({p.cfg['env'] for p in plan})} env(s) x "
          f"{len({p.cfg['core'] for p in plan})} core(s) x {len({p.cfg['seed'] for p in plan})} seed(s)) "
          f"under {logdir}: {len(plan) - len(todo)} already done, {len(todo)} to run "
          f"({sum(p.state == 'resume' for p in todo)} to resume, {sum(p.state == 'done' for p in todo)} "
          f"to evaluate only)")
    outcomes = {id(p): RunOutcome(p, "skipped", _steps_in(p.run_dir / FINAL_MODEL)) for p in plan if not p.todo}
    if todo:
        outcomes.update(_run_on_ray(todo, evaluate, episodes, workers, address, device, gpus_per_run, retries,
                                    progress))
    ordered = [outcomes[id(p)] for p in plan]
    print_outcomes(ordered)
    if evaluate:
        _compare_per_env(ordered, logdir)
    _raise_if_failed(ordered)
    return ordered


def sweep_device(device: str | None, plan: list[PlannedRun], address: str | None, gpus_per_run: float | None) -> str:
    """The device of a sweep's runs: ``device``, else the runs' config ``device``; UserError (before Ray
    starts) for ``cuda:N``, for GPUs with ``cpu``, and for ``cuda`` on a local machine without CUDA."""
    if device is None:
        device = plan[0].cfg.get("device", "auto") if plan else "auto"
    device = check_device_name(device)
    if device.startswith("cuda:"):
        raise UserError(f"device {device}: in a sweep Ray gives each run its GPU; use --device cuda "
                        f"(or auto) and --gpus-per-run")
    if device == "cpu" and gpus_per_run:
        raise UserError(f"--gpus-per-run {gpus_per_run} with --device cpu: the runs would not use their GPUs")
    if address is None and device == "cuda":
        resolve_device(device)  # one line if this machine has no GPU
    return device


def run_planned(runs: list[PlannedRun], workers: int | None = None, device: str | None = None, retries: int = 1,
                progress: bool = True) -> list[RunOutcome]:
    """Train ``runs`` (planned and checked by the caller, e.g. ``demo``) on a local Ray instance; the final table.

    Raises :class:`SweepFailed` if any run failed, after all others ended.
    """
    device = sweep_device(device, runs, None, None)
    outcomes = _run_on_ray(runs, False, None, workers, None, device, None, retries, progress)
    ordered = [outcomes[id(p)] for p in runs]
    print_outcomes(ordered)
    _raise_if_failed(ordered)
    return ordered


def _raise_if_failed(outcomes: Sequence[RunOutcome]) -> None:
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        names = ", ".join(str(o.run.run_dir) for o in failed)
        raise SweepFailed(f"{len(failed)} of {len(outcomes)} runs failed: {names} "
                          f"(reasons and logs in the table above)")


def _steps_in(model_file: Path) -> int | None:
    """The step count stored in ``model_file`` (a run's model.zip or checkpoint), None if unreadable."""
    try:
        return read_num_timesteps(model_file)
    except UserError:
        return None


def _run_on_ray(todo: list[PlannedRun], evaluate: bool, episodes: int | None, workers: int | None,
                address: str | None, device: str, gpus_per_run: float | None, retries: int,
                progress: bool) -> dict[int, RunOutcome]:
    import ray

    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    _start_ray(address, workers)
    display: LiveLine | None = None
    try:
        print(f"Ray {'started locally with ' + str(workers) + ' CPUs' if address is None else 'joined at ' + address}"
              f" in {time.perf_counter() - t0:.1f} s")
        if gpus_per_run is None:
            # The GPUs Ray schedules by (it finds them itself, locally too): a task asking for a GPU that
            # Ray does not count would wait forever. The driver never imports torch for this.
            has_gpus = ray.cluster_resources().get("GPU", 0) > 0
            if device == "cuda" and not has_gpus:
                where = "on this machine" if address is None else f"in the Ray cluster at {address}"
                raise UserError(f"--device cuda: Ray finds no GPU {where}")
            gpus_per_run = 1.0 if device in ("cuda", "auto") and has_gpus else 0.0
        task_device = "cuda" if gpus_per_run > 0 else "cpu"
        display = LiveLine(todo, progress)
        # The progress board feeds the live line only: without one (piped output, --no-progress) there is
        # no board actor, whose process would take CPU from the runs while they start.
        board_name = f"rims-rl progress {uuid.uuid4().hex}" if display.live is not None else None
        remote = ray.remote(run_task)
        refs: dict[Any, PlannedRun] = {}
        for run in todo:
            evaluation = None
            if run.evaluate:
                evaluation = {"shifts": run.cfg["eval"]["sweep"],
                              "episodes": episodes if episodes is not None else run.cfg["eval"]["episodes"]}
            options = dict(num_cpus=max(1, run.cfg["threads"]), num_gpus=gpus_per_run, max_retries=retries,
                           retry_exceptions=True, name=f"rims-rl {run.name}")
            refs[remote.options(**options).remote(run.cfg, str(run.run_dir), task_device, evaluation,
                                                  BoardClient(board_name), run.name)] = run
        # Created after the tasks, so that they get the workers ray.init started ahead (an actor created
        # first took one, and a task waited for a new worker process).
        board = None
        if board_name is not None:
            board = ray.remote(num_cpus=0)(ProgressBoard).options(name=board_name).remote()
        return _wait_for_runs(refs, board, display)
    finally:
        if display is not None:
            display.stop()
        ray.shutdown()


def _wait_for_runs(refs: dict[Any, PlannedRun], board: Any, display: LiveLine) -> dict[int, RunOutcome]:
    """Collect the tasks as they end, showing the live line (fed by ``board``, None without a live line;
    the caller stops ``display``); on Ctrl-C let the running ones checkpoint."""
    import ray

    outcomes: dict[int, RunOutcome] = {}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            for ref in ready:
                outcome = _collect(ref, refs[ref])
                outcomes[id(outcome.run)] = outcome
                display.finished(outcome)
            if board is not None:
                display.update(ray.get(board.snapshot.remote()))
    except KeyboardInterrupt:
        display.stop()
        print("interrupted: stopping the running runs at their next step (each saves a checkpoint) ...",
              file=sys.stderr)
        for ref in pending:
            ray.cancel(ref)
        try:
            for ref in pending:
                outcome = _collect(ref, refs[ref], interrupted=True)
                outcomes[id(outcome.run)] = outcome
        except KeyboardInterrupt:
            pass
        for run in refs.values():
            outcomes.setdefault(id(run), RunOutcome(run, "interrupted", _steps_in(run.run_dir / CHECKPOINT),
                                                    "stopped by Ctrl-C"))
        print_outcomes([outcomes[id(r)] for r in refs.values()])
        raise Interrupted("SIGINT: sweep stopped, the running runs saved checkpoints; "
                          "run the same command again to resume") from None
    return outcomes


def _collect(ref: Any, run: PlannedRun, interrupted: bool = False) -> RunOutcome:
    import ray
    import ray.exceptions as rex

    try:
        result = ray.get(ref)
    except rex.TaskCancelledError:
        return RunOutcome(run, "interrupted", _steps_in(run.run_dir / CHECKPOINT), "cancelled before it started")
    except rex.RayError as e:
        if interrupted:
            return RunOutcome(run, "interrupted", _steps_in(run.run_dir / CHECKPOINT), "stopped by Ctrl-C")
        return RunOutcome(run, "failed", None, _task_failure_reason(e))
    return RunOutcome(run, result["status"], result["steps"], result["reason"])


class LiveLine:
    """One live status line: runs done / running / failed / waiting, aggregate fps, ETA.

    On a terminal a rich live line; otherwise one plain line per finished run.
    """

    def __init__(self, runs: list[PlannedRun], enabled: bool = True) -> None:
        from rich.console import Console

        self.runs = {r.name: r for r in runs}
        self.console = Console()
        self.done = self.failed = 0
        self.ended: set[str] = set()
        self.steps: dict[str, int] = {}
        self.running: set[str] = set()
        self.history: list[tuple[float, int]] = []
        self.t0 = time.perf_counter()
        self.live: Any = None
        if enabled and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._text(), console=self.console, refresh_per_second=2, transient=True)
            self.live.start()

    def _text(self) -> str:
        total = sum(r.cfg["timesteps"] for name, r in self.runs.items() if name not in self.ended or
                    self.steps.get(name))  # a failed run no longer counts
        now_steps = sum(self.steps.values())
        fps = 0.0
        if len(self.history) >= 2:
            (t_a, s_a), (t_b, s_b) = self.history[0], self.history[-1]
            fps = (s_b - s_a) / (t_b - t_a) if t_b > t_a else 0.0
        remaining = max(0, total - now_steps)
        eta = f"{remaining / fps:.0f} s" if fps > 0 else "-"
        waiting = len(self.runs) - self.done - self.failed - len(self.running)
        return (f"sweep: {self.done} done, {len(self.running)} running, {self.failed} failed, {max(0, waiting)} waiting"
                f" | {now_steps}/{total} steps, {fps:.0f} fps, ETA {eta}")

    def update(self, snapshot: tuple[dict[str, int], set[str]]) -> None:
        steps, running = snapshot
        self.steps.update({name: n for name, n in steps.items() if name not in self.ended})
        self.running = running - self.ended
        now = time.perf_counter()
        self.history = [h for h in self.history if now - h[0] <= 20.0] + [(now, sum(self.steps.values()))]
        if self.live is not None:
            self.live.update(self._text())

    def finished(self, outcome: RunOutcome) -> None:
        if outcome.status == "done":
            self.done += 1
            if outcome.steps is not None:
                self.steps[outcome.run.name] = outcome.steps
        else:
            self.failed += 1
            self.steps[outcome.run.name] = 0
        self.running.discard(outcome.run.name)
        self.ended.add(outcome.run.name)
        detail = f"{outcome.steps} steps" if outcome.status == "done" else outcome.reason
        self.console.print(f"{outcome.status}: {outcome.run.run_dir} ({detail})", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def print_outcomes(outcomes: Sequence[RunOutcome]) -> None:
    """The final table: every run as done / skipped / failed / interrupted, steps, reason and log."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "interrupted")}
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(outcomes)} runs)")
    width = max(len(str(o.run.run_dir)) for o in outcomes)
    print(f"  {'status':11s} {'steps':>9s}  {'run dir':{width}s}  note")
    for o in outcomes:
        steps = "-" if o.steps is None else str(o.steps)
        note = ""
        if o.status in ("failed", "interrupted"):
            log = o.run.run_dir / TRAIN_LOG
            note = f"{o.reason} (log: {log})" if log.is_file() else str(o.reason)
        elif o.status == "skipped":
            note = "already done"
        print(f"  {o.status:11s} {steps:>9s}  {str(o.run.run_dir):{width}s}  {note}".rstrip())


def _compare_per_env(outcomes: Sequence[RunOutcome], logdir: Path) -> None:
    from agents.experiments import commands

    by_env: dict[str, list[Path]] = {}
    for o in outcomes:
        if o.status in ("done", "skipped") and (o.run.run_dir / EVAL_DIR / RESULTS_FILE).is_file():
            by_env.setdefault(o.run.cfg["env"], []).append(o.run.run_dir)
    for env, runs in by_env.items():
        out = logdir / env_dirname(env) / "compare"
        try:
            commands.compare(runs, out=out, quiet=True)
            print(f"comparison of {env}: {out / 'compare.csv'} (+ compare.png)")
        except UserError as e:
            print(f"comparison of {env} skipped: {first_line(e)}", file=sys.stderr)
