"""Tuning state on disk: Optuna's journal storage with one study per (env, label), trials asked and
re-queued, and the outputs (``trials.csv``, ``best_<label>.yaml``).

The journal file (``<logdir>/<env>/tune.journal``) is text and tolerates several writer processes; a
re-run continues each study where the last one stopped. Trials that a stopped driver left RUNNING are
marked failed-interrupted and re-queued with the same parameters and run dirs (:func:`recover_interrupted`),
so no trial is lost or counted twice.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from agents.experiments.files import atomic_open, atomic_write_text
from agents.experiments.matching import MATCHED_CORES
from agents.experiments.tune.space import Param, apply_params
from rims_rl.errors import UserError

TUNING_SEED_BASE = 1000  # tuning seeds 1000 + i; studies report seeds 0-999
JOURNAL = "tune.journal"
TRIALS_FILE = "trials.csv"
RUN_KEY = "run_key"  # trial user attribute: the name of its run dirs (kept when an interrupted trial is re-queued)
INTERRUPTED = "interrupted"  # trial user attribute of a trial failed by an interruption (re-queued, not counted)
FAILED_RUNS = "failed_runs"  # trial user attribute: why its runs failed (the trial counts, with no score)


def tuning_seeds(seeds_per_trial: int, first: int = TUNING_SEED_BASE) -> list[int]:
    """The seeds every trial trains on: ``first``, ``first + 1``, ... (1000 + i by default)."""
    return list(range(first, first + seeds_per_trial))


def repair_journal(path: Path) -> bool:
    """Drop an incomplete last record of a journal file (a write cut off by a kill, or a copy taken while
    the tune wrote), which Optuna would otherwise glue to the next record and then refuse to read.
    True if it dropped one. The cut-off operation never took effect: a trial it would have finished
    stays RUNNING and is re-queued."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if not data or data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    return True


def journal_storage(env_dir: Path) -> Any:
    """Optuna's journal file storage at ``<env_dir>/tune.journal`` (created with its dir; an incomplete last
    record is dropped first, with a note on stderr)."""
    import sys

    import optuna
    from optuna.storages.journal import JournalFileBackend

    env_dir.mkdir(parents=True, exist_ok=True)
    if repair_journal(env_dir / JOURNAL):
        print(f"tune: dropped the incomplete last record of {env_dir / JOURNAL} (a write cut off by a kill)",
              file=sys.stderr)
    return optuna.storages.JournalStorage(JournalFileBackend(str(env_dir / JOURNAL)))


def study_name(env: str, label: str) -> str:
    return f"{env}/{label}"


def journal_labels(env_dir: Path, env: str) -> list[str]:
    """The labels whose studies of ``env`` the journal under ``env_dir`` holds (none without a journal)."""
    import optuna

    if not (env_dir / JOURNAL).is_file():
        return []
    names = optuna.study.get_all_study_names(storage=journal_storage(env_dir))
    return [name.removeprefix(f"{env}/") for name in names if name.startswith(f"{env}/")]


def open_study(storage: Any, env: str, label: str, sampler: str = "tpe", seed: int = 0) -> Any:
    """The study of (env, label), created on first use; maximizes the score.

    The sampler is seeded with ``seed`` plus the number of trials the study already holds: a re-run
    (after an interruption) draws new values instead of repeating the first run's random start-up trials,
    and the same history always gives the same draws. ``seed`` is distinct per label, so that labels do
    not draw identical sequences by accident."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler not in ("tpe", "random"):
        raise UserError(f"--sampler must be tpe or random, got {sampler!r}")
    study = optuna.create_study(storage=storage, study_name=study_name(env, label), direction="maximize",
                                load_if_exists=True)
    offset = seed + len(study.get_trials(deepcopy=False))
    study.sampler = (optuna.samplers.TPESampler(seed=offset) if sampler == "tpe"
                     else optuna.samplers.RandomSampler(seed=offset))
    return study


def counted(trial: Any) -> bool:
    """A trial that used up budget: complete, or failed by its runs (not by an interruption)."""
    import optuna

    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        return True
    return state == optuna.trial.TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED)


def finished_trials(study: Any) -> list[Any]:
    """The trials that count towards the budget, in trial-number order."""
    return [t for t in study.get_trials(deepcopy=False) if counted(t)]


def recover_interrupted(study: Any) -> int:
    """Mark every RUNNING trial (left by a stopped driver) failed-interrupted and re-queue its parameters
    with its run dirs, so that the next trial asked resumes it from its checkpoints; return how many."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={RUN_KEY: trial.user_attrs.get(RUN_KEY)})
    return len(running)


def ask(study: Any, space: list[Param]) -> tuple[Any, dict[str, Any], str]:
    """Ask the next trial: (trial, {key: value}, run key). A re-queued trial keeps its run key."""
    trial = study.ask()
    params = {p.key: p.suggest(trial) for p in space}
    run_key = trial.user_attrs.get(RUN_KEY) or f"trial{trial.number:03d}"
    trial.set_user_attr(RUN_KEY, run_key)
    return trial, params, run_key


# ---------------------------------------------------------------- outputs

TRIAL_COLUMNS = ("label", "core", "trial", "score", "seconds")


def trial_rows(studies: dict[str, Any], cores: dict[str, str], space: list[Param]) -> list[dict[str, Any]]:
    """trials.csv rows: one per finished trial of each label's study, with one column per searched key."""
    rows = []
    for label, study in studies.items():
        for t in finished_trials(study):
            rows.append({"label": label, "core": cores[label], "trial": t.number,
                         "score": round(t.value, 6) if t.value is not None else None,
                         "seconds": round(float(t.user_attrs.get("seconds", 0.0)), 1),
                         **{p.key: t.params.get(p.key) for p in space}})
    return rows


def write_trials(env_dir: Path, rows: list[dict[str, Any]], space: list[Param]) -> Path:
    """``<env_dir>/trials.csv`` (atomic)."""
    path = env_dir / TRIALS_FILE
    columns = [*TRIAL_COLUMNS, *dict.fromkeys(p.key for p in space)]
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def best_trial(study: Any) -> Any | None:
    """The finished trial with the highest score (None before the first complete trial)."""
    scored = [t for t in finished_trials(study) if t.value is not None]
    return max(scored, key=lambda t: (t.value, -t.number)) if scored else None


TUNED_FILE = "tuned.yaml"


def write_tuned_values(env_dir: Path, best: dict[str, dict[str, Any]]) -> Path:
    """``tuned.yaml``: per label, the dotted keys and values of its best trial (what a study grid's labels
    ``set``), with the trial and score as a comment."""
    lines = ["# the values of each label's best trial (rims-rl tune); a study grid's labels take them with set:"]
    for label, entry in best.items():
        lines.append(f"# {label}: trial {entry['trial']}, score {entry['score']:.4g}")
    body = {label: dict(entry["params"]) for label, entry in best.items()}
    return atomic_write_text(env_dir / TUNED_FILE, "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False))


def write_best_config(env_dir: Path, label: str, base: dict, params: dict[str, Any], preset: str) -> Path:
    """``best_<label>.yaml``: the complete config of the best trial (seed 0, the ``base:`` preset named), which
    ``rims-rl train --config`` and sweep grid files accept."""
    cfg = apply_params(base, params)
    cfg["seed"] = 0
    header = f"# best config of `rims-rl tune` for {cfg['env']} ({label}): {', '.join(f'{k}={v}' for k, v in params.items())}\n"
    if cfg.get("match", "none") != "none" and cfg["core"] in MATCHED_CORES:
        # the width was matched against the grid's rims label; alone, the file would match its own config's
        header += (f"# match: {cfg['match']} against the tuned grid's rims gave hidden_size "
                   f"{cfg['cores'][cfg['core']]['hidden_size']}, kept as it is (match: none)\n")
        cfg["match"] = "none"
    text = header + yaml.safe_dump({"base": preset, **cfg}, sort_keys=False, default_flow_style=False)
    return atomic_write_text(env_dir / f"best_{label}.yaml", text)
