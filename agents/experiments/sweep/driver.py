"""The sweep's driver: :func:`sweep` plans a grid, runs it on a :class:`~.runner.RunnerSession` and compares
per env; :func:`run_planned` runs runs that ``demo`` planned.

The driver imports neither torch nor SB3: only the tasks do, in the Ray workers.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from agents.checks import check_dir
from agents.experiments.devices import check_device_name, resolve_device
from agents.experiments.evaluation.results import RESULTS_FILE
from agents.experiments.outcomes import SweepFailed
from agents.experiments.runs import EVAL_DIR, FINAL_MODEL, env_dirname
from agents.experiments.sweep.grid import Grid, PlannedRun, RunOutcome, plan_sweep
from agents.experiments.sweep.live import print_outcomes
from agents.experiments.sweep.runner import RunnerSession, check_options, check_sweep_device
from agents.experiments.sweep.task import steps_in
from rims_rl.errors import UserError, first_line


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
    """Train (and evaluate) every run of ``grid`` as Ray tasks, then compare per env (the ``sweep`` command).

    ``device``: auto, cpu or cuda for every run (None: the config's ``device``). Raises
    :class:`SweepFailed` naming the failed runs after all others ended, and
    :class:`agents.experiments.outcomes.Interrupted` on Ctrl-C once the running runs have checkpointed.
    """
    check_options(workers, gpus_per_run, retries)
    if device is not None:
        check_device_name(device)
    check_dir(logdir, "--logdir")
    logdir = Path(logdir).resolve() if address is None else Path(logdir).absolute()
    plan = plan_sweep(grid, logdir, evaluate, episodes)
    device = sweep_device(device, plan, address, gpus_per_run)
    todo = [p for p in plan if p.todo]
    print(f"rims-rl sweep: {len(plan)} runs ({len({p.cfg['env'] for p in plan})} env(s) x "
          f"{len({p.cfg['label'] for p in plan})} label(s) x {len({p.cfg['seed'] for p in plan})} seed(s)) "
          f"under {logdir}: {len(plan) - len(todo)} already done, {len(todo)} to run "
          f"({sum(p.state == 'resume' for p in todo)} to resume, {sum(p.state == 'done' for p in todo)} "
          f"to evaluate only)")
    outcomes = {id(p): RunOutcome(p, "skipped", steps_in(p.run_dir / FINAL_MODEL)) for p in plan if not p.todo}
    if todo:
        evaluations = [_evaluation(run, episodes) for run in todo]
        with RunnerSession(workers, address, device, gpus_per_run, retries, progress, len(todo)) as session:
            outcomes.update(_run_all(session, todo, evaluations))
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
    device = check_sweep_device(device, gpus_per_run)
    if address is None and device == "cuda":
        resolve_device(device)  # one line if this machine has no GPU
    return device


def run_planned(runs: list[PlannedRun], workers: int | None = None, device: str | None = None, retries: int = 1,
                progress: bool = True) -> list[RunOutcome]:
    """Train ``runs`` (planned and checked by the caller, e.g. ``demo``) on a local Ray instance; the final table.

    Raises :class:`SweepFailed` if any run failed, after all others ended.
    """
    device = sweep_device(device, runs, None, None)
    with RunnerSession(workers, None, device, None, retries, progress, len(runs)) as session:
        outcomes = _run_all(session, runs, [None] * len(runs))
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


def _evaluation(run: PlannedRun, episodes: int | None) -> dict | None:
    """The evaluation after training that ``run`` asks for: its config's ladder, ``episodes`` per setting
    (default the config's)."""
    if not run.evaluate:
        return None
    return {"shifts": run.cfg["eval"]["sweep"],
            "episodes": episodes if episodes is not None else run.cfg["eval"]["episodes"]}


def _run_all(session: RunnerSession, runs: list[PlannedRun], evaluations: list[dict | None]) -> dict[int, RunOutcome]:
    """Submit every run (each checked first, so that an impossible one submits none) and wait for all."""
    for run, evaluation in zip(runs, evaluations):
        session.check(run, evaluation)
    for run, evaluation in zip(runs, evaluations):
        session.submit(run, evaluation)
    outcomes: dict[int, RunOutcome] = {}
    while session.running:
        outcomes.update((id(o.run), o) for o in session.wait())
    return outcomes


def _compare_per_env(outcomes: Sequence[RunOutcome], logdir: Path) -> None:
    # Imported when the runs have ended: rliable takes over a second to import, before Ray would start.
    from agents.experiments.study import write_comparison

    by_env: dict[str, list[Path]] = {}
    for o in outcomes:
        if o.status in ("done", "skipped") and (o.run.run_dir / EVAL_DIR / RESULTS_FILE).is_file():
            by_env.setdefault(o.run.cfg["env"], []).append(o.run.run_dir)
    for env, runs in by_env.items():
        out = logdir / env_dirname(env) / "compare"
        try:
            write_comparison(runs, out=out, quiet=True)
            print(f"comparison of {env}: {out / 'compare.csv'} (+ compare.png)")
        except UserError as e:
            print(f"comparison of {env} skipped: {first_line(e)}", file=sys.stderr)
