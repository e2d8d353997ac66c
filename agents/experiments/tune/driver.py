"""The tune driver: Optuna trials of every label run as sweep runs, side by side, until each label has its
budget of finished trials.

A trial is a config (the label's, with the trial's values) trained on S tuning seeds; each seed is an
ordinary run dir ``<logdir>/<env>/<label>-trial<NNN>/seed<N>`` that the sweep's runner trains and then
evaluates on the unshifted setting only. The trial's score is the mean over its seeds of the unshifted
success rate (the mean return where the env has no success notion). Labels take turns, so that all of
them advance together; the driver asks a new trial whenever the runner has room for its seeds.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agents.checks import check_dir, check_episodes
from agents.experiments.config import EVAL_SEED
from agents.experiments.evaluation.ladder import UNSHIFTED
from agents.experiments.evaluation.results import RESULTS_FILE, read_results
from agents.experiments.outcomes import Interrupted
from agents.experiments.runs import EVAL_DIR, env_dirname, read_pid, run_dir_for, run_state, write_pid
from agents.experiments.sweep.grid import Grid, PlannedRun, RunOutcome, grid_jobs, is_evaluated, job_configs
from agents.experiments.tune import storage
from agents.experiments.tune.space import Param, apply_params, read_space, space_for
from agents.experiments.validation import run_config
from rims_rl.errors import UserError

LOCK_FILE = ".tune.lock"
SCORE_EPISODES = 100  # unshifted evaluation episodes per seed of a trial (the score's noise: +-0.1 at worst)


@dataclass
class LabelStudy:
    """One (env, label) under tuning: its base config, the params it searches, its Optuna study."""

    env: str
    label: str
    core: str
    base: dict
    space: list[Param]
    study: Any
    env_dir: Path


@dataclass
class TrialRuns:
    """A trial in flight: its Optuna trial, values, and the outcomes of its seeds' runs so far."""

    target: LabelStudy
    trial: Any
    params: dict[str, Any]
    runs: list[PlannedRun]
    outcomes: dict[Path, RunOutcome] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def complete(self) -> bool:
        return len(self.outcomes) == len(self.runs)


def trial_label(label: str, run_key: str) -> str:
    """The label of a trial's runs (their dir name): ``rims-trial003``."""
    return f"{label}-{run_key}"


def trial_score(run_dirs: list[Path]) -> float:
    """Mean over the runs of the unshifted success rate (mean return where there is no success notion)."""
    values = []
    for run_dir in run_dirs:
        rows = read_results(run_dir / EVAL_DIR / RESULTS_FILE)["results"]
        unshifted = next(r for r in rows if (r["shift"], int(r["level"])) == (UNSHIFTED, 0))
        values.append(unshifted["success_rate"] if unshifted["success_rate"] is not None else unshifted["mean_return"])
    return float(sum(values) / len(values))


def plan_trial(target: LabelStudy, params: dict[str, Any], run_key: str, seeds: list[int], logdir: Path,
               episodes: int) -> list[PlannedRun]:
    """The runs of one trial: the label's config with the trial's values, one run per tuning seed, each
    evaluated on the unshifted setting after training (skipped where a run is done and evaluated)."""
    cfg = apply_params(target.base, params, source=f"trial {run_key} of {target.label}")
    cfg["eval"] = {**cfg["eval"], "sweep": "none", "episodes": episodes}
    name = trial_label(target.label, run_key)
    runs = []
    for seed in seeds:
        run_cfg = run_config(cfg, target.core, seed, name)
        run_dir = run_dir_for(logdir, target.env, name, seed)
        state = run_state(run_dir, run_cfg)
        runs.append(PlannedRun(run_cfg, run_dir, state, not (state == "done" and is_evaluated(run_dir, episodes))))
    return runs


def _sampler_seed(seed: int, env: str, label: str) -> int:
    """A sampler seed of its own per (env, label), reproducible from ``seed``."""
    return (seed + zlib.crc32(f"{env}/{label}".encode())) % 2**31


def prepare(grid: Grid, logdir: Path, space_path: str | os.PathLike | None, sampler: str,
            seed: int) -> list[LabelStudy]:
    """Every (env, label) of ``grid`` with its base config, its part of the space and its study (created or
    continued); UserError for a bad space, before anything runs."""
    targets = []
    for job in grid_jobs(grid):
        for variant, base in job_configs(grid, job):
            space = space_for(read_space(space_path, base), variant.core)
            env_dir = Path(logdir) / env_dirname(base["env"])
            if not space:
                raise UserError(f"the search space has no key for {variant.label} (core {variant.core}); give at "
                                f"least one key that applies to every core")
            targets.append(LabelStudy(base["env"], variant.label, variant.core, base, space, None, env_dir))
    for env_dir, env in dict.fromkeys((t.env_dir, t.env) for t in targets):
        here = [t.label for t in targets if t.env_dir == env_dir]
        others = sorted(set(storage.journal_labels(env_dir, env)) - set(here))
        if others:  # trials.csv and tuned.yaml are rewritten from this tune's labels: they would lose the others
            raise UserError(f"{env_dir / storage.JOURNAL} also holds the tuning of {', '.join(others)}: tune every "
                            f"label of it together (add {', '.join(others)}), so that trials.csv and tuned.yaml keep "
                            f"them, or use another --logdir")
    for target in targets:  # Optuna (and its import) only once every space is known to be valid
        target.study = storage.open_study(storage.journal_storage(target.env_dir), target.env, target.label,
                                          sampler, _sampler_seed(seed, target.env, target.label))
        storage.recover_interrupted(target.study)
    return targets


def run_tune(targets: list[LabelStudy], session: Any, trials: int, seeds: list[int], logdir: Path,
             episodes: int, on_trial: Callable[[LabelStudy], None]) -> None:
    """Ask, run and tell trials on ``session`` (a sweep ``RunnerSession``) until every target has ``trials``
    finished trials. ``on_trial(target)`` runs after each told trial (the outputs are rewritten there).

    On an interruption the trials in flight are failed-interrupted and re-queued with their run dirs
    (``storage.recover_interrupted``), so that the next run of the command resumes them."""
    in_flight: dict[Path, TrialRuns] = {}
    turn = 0
    try:
        while True:
            started = _start_trials(targets, session, trials, seeds, logdir, episodes, in_flight, turn, on_trial)
            turn += started
            if not in_flight:
                return
            for outcome in session.wait():
                trial = in_flight.pop(outcome.run.run_dir)
                trial.outcomes[outcome.run.run_dir] = outcome
                if trial.complete:
                    _tell(trial)
                    on_trial(trial.target)
    except (Interrupted, KeyboardInterrupt):
        for target in targets:
            storage.recover_interrupted(target.study)
            on_trial(target)
        raise


def _counted_and_running(target: LabelStudy, in_flight: dict[Path, TrialRuns]) -> int:
    running = {id(t) for t in in_flight.values() if t.target is target}
    return len(storage.finished_trials(target.study)) + len(running)


def _start_trials(targets: list[LabelStudy], session: Any, trials: int, seeds: list[int], logdir: Path,
                  episodes: int, in_flight: dict[Path, TrialRuns], turn: int,
                  on_trial: Callable[[LabelStudy], None]) -> int:
    """Ask trials, labels taking turns, while the runner has room for a trial's seeds (or is idle)."""
    started = 0
    while True:
        waiting = [t for t in targets if _counted_and_running(t, in_flight) < trials]
        if not waiting or (session.running and session.running + len(seeds) > session.capacity()):
            return started
        target = waiting[(turn + started) % len(waiting)]
        trial, params, run_key = storage.ask(target.study, target.space)
        runs = plan_trial(target, params, run_key, seeds, logdir, episodes)
        flight = TrialRuns(target, trial, params, runs)
        for run in runs:
            if run.todo:
                session.submit(run, {"shifts": "none", "episodes": episodes} if run.evaluate else None)
                in_flight[run.run_dir] = flight
            else:
                flight.outcomes[run.run_dir] = RunOutcome(run, "skipped")
        if flight.complete:  # every seed was done already (a trial re-queued after its runs finished)
            _tell(flight)
            on_trial(target)
        started += 1


def _tell(flight: TrialRuns) -> None:
    """Tell Optuna the trial's score, or that it failed (its failed runs named)."""
    import optuna

    study, trial = flight.target.study, flight.trial
    trial.set_user_attr("seconds", sum(_run_seconds(r) for r in flight.runs))
    failed = [o for o in flight.outcomes.values() if o.status not in ("done", "skipped")]
    if failed:
        trial.set_user_attr(storage.FAILED_RUNS, "; ".join(f"{o.run.run_dir}: {o.reason}" for o in failed))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, trial_score([r.run_dir for r in flight.runs]))


def _run_seconds(run: PlannedRun) -> float:
    """A run's training seconds (from its TensorBoard events), 0 where there are none."""
    from agents.experiments.curves import training_wall_seconds

    seconds = training_wall_seconds(run.run_dir, run.cfg["n_envs"] * run.cfg["ppo"]["n_steps"])
    return float(seconds or 0.0)


def check_budget(trials: int, seeds_per_trial: int, episodes: int) -> None:
    """UserError for a budget that cannot run."""
    if trials < 1:
        raise UserError(f"--trials must be >= 1, got {trials}")
    if seeds_per_trial < 1:
        raise UserError(f"--seeds-per-trial must be >= 1, got {seeds_per_trial}")
    check_episodes(episodes, EVAL_SEED)


def lock_dirs(env_dirs: list[Path]) -> Any:
    """Hold a writer lock on every env dir of a tune (``<env dir>/.tune.lock``, holding the PID): a second tune
    on them is refused in one line naming the first one's PID. Returns the ExitStack that releases them."""
    from contextlib import ExitStack

    from filelock import FileLock, Timeout

    stack = ExitStack()
    for env_dir in dict.fromkeys(env_dirs):
        check_dir(env_dir, "--logdir")
        env_dir.mkdir(parents=True, exist_ok=True)
        path = env_dir / LOCK_FILE
        lock = FileLock(path, timeout=0, on_acquired=write_pid)
        try:
            lock.acquire()
        except Timeout:
            stack.close()
            holder = read_pid(path)
            raise UserError(f"{env_dir} is being tuned by another process ({'pid ' + str(holder) if holder else 'pid ?'}"
                            f"); wait for it to end or stop it (kill {holder or 'PID'})") from None
        stack.callback(lock.release)
    return stack


def write_outputs(targets: list[LabelStudy]) -> list[Path]:
    """Rewrite ``trials.csv`` of every env and ``best_<label>.yaml`` of every label with a scored trial;
    return the files written."""
    from agents.experiments.config import DEFAULT_PRESET

    written = []
    for env_dir in dict.fromkeys(t.env_dir for t in targets):
        mine = [t for t in targets if t.env_dir == env_dir]
        space = list({p.key: p for t in mine for p in t.space}.values())
        rows = storage.trial_rows({t.label: t.study for t in mine}, {t.label: t.core for t in mine}, space)
        written.append(storage.write_trials(env_dir, rows, space))
        tuned = {}
        for target in mine:
            best = storage.best_trial(target.study)
            if best is not None:
                written.append(storage.write_best_config(env_dir, target.label, target.base, dict(best.params),
                                                         DEFAULT_PRESET))
                tuned[target.label] = {"trial": best.number, "score": best.value, "params": best.params}
        if tuned:
            written.append(storage.write_tuned_values(env_dir, tuned))
    return written


def tune(grid: Grid, logdir: str | os.PathLike, trials: int, seeds_per_trial: int,
         space: str | os.PathLike | None = None, episodes: int = SCORE_EPISODES, sampler: str = "tpe", seed: int = 0,
         first_seed: int = storage.TUNING_SEED_BASE, session_factory: Callable[..., Any] | None = None,
         **session_options: Any) -> list[LabelStudy]:
    """Tune every (env, label) of ``grid`` with the same space and budget: ``trials`` finished trials of
    ``seeds_per_trial`` seeds each (seeds ``first_seed`` + i), continuing the studies stored under ``logdir``.

    ``session_options`` go to the sweep's ``RunnerSession`` (workers, address, device, gpus_per_run, retries,
    progress); ``session_factory`` replaces it (tests). Everything is checked before Ray starts."""
    from agents.experiments.tune.storage import finished_trials

    check_budget(trials, seeds_per_trial, episodes)
    if seed < 0:
        raise UserError(f"--sampler-seed must be >= 0, got {seed}")
    if first_seed < storage.TUNING_SEED_BASE:
        raise UserError(f"--seed {first_seed}: tuning seeds must be >= {storage.TUNING_SEED_BASE} (seeds 0-999 are "
                        f"the ones studies report, so that no reported run was tuned on)")
    seeds = storage.tuning_seeds(seeds_per_trial, first_seed)
    logdir = Path(logdir).resolve() if session_options.get("address") is None else Path(logdir).absolute()
    check_dir(logdir, "--logdir")
    targets = prepare(grid, logdir, space, sampler, seed)
    with lock_dirs([t.env_dir for t in targets]):
        for target in targets:  # recovered again under the lock: another tune may have stopped meanwhile
            storage.recover_interrupted(target.study)
        left = {t.label: trials - len(finished_trials(t.study)) for t in targets}
        print(f"rims-rl tune: {len(targets)} label(s) ({', '.join(sorted({t.label for t in targets}))}) x "
              f"{trials} trials x {seeds_per_trial} seed(s) ({', '.join(map(str, seeds))}) x "
              f"{targets[0].base['timesteps']} steps under {logdir}; trials left: "
              + ", ".join(f"{label} {max(0, n)}" for label, n in left.items()))
        if any(n > 0 for n in left.values()):
            if session_factory is None:
                from agents.experiments.sweep.runner import RunnerSession as session_factory
            total = sum(max(0, n) for n in left.values()) * seeds_per_trial
            options = {k: v for k, v in session_options.items() if v is not None}
            options.setdefault("device", targets[0].base.get("device", "auto"))
            with session_factory(total_runs=total, **options) as session:
                run_tune(targets, session, trials, seeds, logdir, episodes, lambda _: write_outputs(targets))
        for path in write_outputs(targets):
            print(f"wrote {path}")
        print_summary(targets)
    return targets


def print_summary(targets: list[LabelStudy]) -> None:
    """One line per label: finished trials, failed ones, the best score and its values."""
    for target in targets:
        finished = storage.finished_trials(target.study)
        failed = sum(t.value is None for t in finished)
        best = storage.best_trial(target.study)
        values = "-" if best is None else ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        score = "-" if best is None else f"{best.value:.3g} (trial {best.number})"
        print(f"  {target.env} {target.label}: {len(finished)} trials ({failed} failed), best {score}: {values}")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
