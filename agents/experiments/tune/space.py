"""The search space of a tune: a YAML file of dotted config keys, each a range or a list of choices.

``ppo.learning_rate: {low: 1e-4, high: 3e-3, log: true}`` is a float range (an int range when both bounds
are ints), ``ppo.lr_schedule: {choices: [constant, linear]}`` a categorical. Keys under ``cores.<name>.``
apply to that core only, every other key to every core. Every key and bound is checked against the
config before anything runs.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from agents.experiments.config import get_value, read_yaml, set_value
from rims_rl.errors import UserError

DEFAULT_SPACE = Path(__file__).resolve().parent / "spaces" / "default.yaml"


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
    data = read_yaml(path, "space file")
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
