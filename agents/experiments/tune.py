"""Equal-budget tuning: one Optuna study per (env, label), each trial a config trained on S tuning seeds.

The protocol (Henderson et al. 2018; Patterson et al. 2024): every label gets the same search space and
the same number of trials of ``S`` seeds x ``T`` steps; tuning seeds (1000 + i) never overlap the seeds
0-999 that studies report; a trial's score is measured on the training distribution only (the unshifted
setting), never on the test shifts.

- **Space** (:func:`read_space`): a YAML mapping of dotted config keys to ``{low, high[, log]}`` or
  ``{choices: [...]}``; keys under ``cores.<name>.`` apply to that core only.
- **Storage**: Optuna's journal file (``<logdir>/<env>/tune.journal``, text, several writers), one study
  per label, so a re-run continues where the last one stopped. Trials that a killed driver left
  RUNNING are marked failed-interrupted and re-queued with the same parameters and run dirs
  (:func:`recover_interrupted`), so no trial is lost or counted twice.
- **Outputs**: ``trials.csv`` (one row per finished trial) and ``best_<label>.yaml`` (a complete config
  that ``train --config`` and sweep grid files accept) under ``<logdir>/<env>/``.
"""
from __future__ import annotations

import copy
import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.experiments.config import get_value, set_value
from agents.experiments.files import atomic_open, atomic_write_text
from rims_rl.errors import UserError

SPACE_DIR = Path(__file__).resolve().parent / "spaces"
DEFAULT_SPACE = SPACE_DIR / "default.yaml"
TUNING_SEED_BASE = 1000  # tuning seeds 1000 + i; studies report seeds 0-999
JOURNAL = "tune.journal"
TRIALS_FILE = "trials.csv"
RUN_KEY = "run_key"  # trial user attribute: the name of its run dirs (kept when an interrupted trial is re-queued)
INTERRUPTED = "interrupted"  # trial user attribute of a trial failed by an interruption (re-queued, not counted)
FAILED_RUNS = "failed_runs"  # trial user attribute: why its runs failed (the trial counts, with no score)


@dataclass(frozen=True)
class Param:
    """One searched config key: a float/int range (``low``, ``high``, ``log``) or ``choices``."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def core(self) -> str | None:
        """The core a ``cores.<name>.`` key belongs to (None: every core)."""
        parts = self.key.split(".")
        return parts[1] if parts[0] == "cores" and len(parts) > 2 else None

    def applies_to(self, core: str) -> bool:
        return self.core is None or self.core == core

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in (self.low, self.high))

    def suggest(self, trial: Any) -> Any:
        """The value Optuna's ``trial`` suggests for this key."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.key} in {list(self.choices)}"
        return f"{self.key} in [{self.low}, {self.high}]" + (" (log)" if self.log else "")


def _number(value: Any) -> Any:
    """``value`` as a finite int or float (YAML reads ``1e-4`` as text), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def parse_param(key: Any, spec: Any, where: str) -> Param:
    """One entry of a space file; UserError naming the key and what is wrong."""
    if not isinstance(key, str) or not key:
        raise UserError(f"{where}: keys must be dotted config keys, got {key!r}")
    if not isinstance(spec, dict):
        raise UserError(f"{where}: {key} must be {{low, high[, log]}} or {{choices: [...]}}, got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "log", "choices"})
    if unknown:
        raise UserError(f"{where}: {key}: unknown field {unknown[0]!r}; valid: low, high, log, choices")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise UserError(f"{where}: {key}: give choices alone, or low and high")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or any(isinstance(c, (dict, list)) for c in choices):
            raise UserError(f"{where}: {key}: choices must be a non-empty list of values, got {choices!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise UserError(f"{where}: {key}: choices repeat a value: {choices!r}")
        return Param(key, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise UserError(f"{where}: {key} needs low and high (or choices)")
    low, high, log = _number(spec["low"]), _number(spec["high"]), spec.get("log", False)
    if low is None or high is None:
        raise UserError(f"{where}: {key}: low and high must be numbers, got {spec['low']!r} and {spec['high']!r}")
    if not low < high:
        raise UserError(f"{where}: {key}: low must be below high, got {low} and {high}")
    if not isinstance(log, bool):
        raise UserError(f"{where}: {key}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise UserError(f"{where}: {key}: a log range needs low > 0, got {low}")
    return Param(key, low=low, high=high, log=log)


def read_space(path: str | os.PathLike | None, base: dict) -> list[Param]:
    """The search space of ``path`` (None: the default space), checked against the config ``base``: every key
    exists and both bounds (or every choice) are values it accepts. UserError for an unknown key, a bad range
    or an empty space."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    where = f"space file {path}"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read {where}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{where} is not valid YAML: {str(e).strip().splitlines()[0]}") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"{where} is empty; give at least one key, e.g. ppo.learning_rate: {{low: 1e-4, high: 1e-2, "
                        f"log: true}}")
    for key in data:
        _check_key(base, key, where)
    space = [parse_param(key, spec, where) for key, spec in data.items()]
    for param in space:  # a key of a core that is not tuned (cores.rims.k when tuning lstm) is checked, unused
        probe = copy.deepcopy(base)
        for value in param.choices if param.choices is not None else (param.low, param.high):
            set_value(probe, param.key, value, source=where)
    return space


def _check_key(base: dict, key: Any, where: str) -> None:
    """UserError (the config's own unknown-key line) unless ``key`` is a config key."""
    if not isinstance(key, str) or not key:
        raise UserError(f"{where}: keys must be dotted config keys, got {key!r}")
    try:
        get_value(base, key)
    except (KeyError, TypeError):
        set_value(copy.deepcopy(base), key, None, source=where)  # raises, naming the valid keys, unless open


def space_for(space: list[Param], core: str) -> list[Param]:
    """The params that apply to ``core``."""
    return [p for p in space if p.applies_to(core)]


def apply_params(base: dict, params: dict[str, Any], source: str = "tune") -> dict:
    """A copy of ``base`` with each dotted key of ``params`` set (type-checked)."""
    cfg = copy.deepcopy(base)
    for key, value in params.items():
        set_value(cfg, key, value, source=source)
    return cfg


def tuning_seeds(seeds_per_trial: int, first: int = TUNING_SEED_BASE) -> list[int]:
    """The seeds every trial trains on: ``first``, ``first + 1``, ... (1000 + i by default)."""
    return list(range(first, first + seeds_per_trial))


# ---------------------------------------------------------------- Optuna storage

def journal_storage(env_dir: Path) -> Any:
    """Optuna's journal file storage at ``<env_dir>/tune.journal`` (created with its dir)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    env_dir.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(env_dir / JOURNAL)))


def study_name(env: str, label: str) -> str:
    return f"{env}/{label}"


def open_study(storage: Any, env: str, label: str, sampler: str = "tpe", seed: int = 0) -> Any:
    """The study of (env, label), created on first use; maximizes the score. ``seed`` seeds the sampler
    (distinct per label, so that equal seeds do not make labels draw identical sequences by accident)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "tpe":
        chosen = optuna.samplers.TPESampler(seed=seed)
    elif sampler == "random":
        chosen = optuna.samplers.RandomSampler(seed=seed)
    else:
        raise UserError(f"--sampler must be tpe or random, got {sampler!r}")
    return optuna.create_study(storage=storage, study_name=study_name(env, label), direction="maximize",
                               sampler=chosen, load_if_exists=True)


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
                         "score": t.value if t.value is not None else None,
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


def write_best_config(env_dir: Path, label: str, base: dict, params: dict[str, Any], preset: str) -> Path:
    """``best_<label>.yaml``: the complete config of the best trial (seed 0, the ``base:`` preset named), which
    ``rims-rl train --config`` and sweep grid files accept."""
    cfg = apply_params(base, params)
    cfg["seed"] = 0
    text = (f"# best config of `rims-rl tune` for {cfg['env']} ({label}): {', '.join(f'{k}={v}' for k, v in params.items())}\n"
            + yaml.safe_dump({"base": preset, **cfg}, sort_keys=False, default_flow_style=False))
    return atomic_write_text(env_dir / f"best_{label}.yaml", text)
