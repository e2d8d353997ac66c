"""Shift families a user registers for their own envs, without editing envs/.

    import envs

    envs.register_shift(
        "gravity", "gravity of the cart-pole (m/s^2)", {0: "9.8", 1: "12", 2: "15", 3: "20"},
        env_ids=["CartPole-v1"],
        wrap=lambda env, level, rng: SetGravity(env, {1: 12.0, 2: 15.0, 3: 20.0}[level]))

A family says what it changes and what each level means (`levels`, level 0 always the unchanged
env), which envs it applies to (`env_ids`, or a predicate `applies` on the registered id), and how a
level >= 1 is made: constructor arguments per level (`env_kwargs`), a function that wraps or changes
each sub-env (`wrap(env, level, rng)`, `rng` the shift's own random stream of that sub-env), or both.
Level 0 never calls either, so it is the unshifted env by construction. Families apply to generic
gymnasium envs and MiniGrid/BabyAI envs; Atari ids keep their built-in shifts (the native vector env
has no per-env Python object to wrap). Register in the module that registers the env, so that
`module:EnvId` brings both into every process that builds it.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.shifts.base import BUILT_IN_SHIFTS, LEVELS, ShiftInfo, shift_rng
from rims_rl.errors import UserError

Wrap = Callable[[gym.Env, int, np.random.Generator], gym.Env]
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ShiftFamily:
    """One registered shift: its ShiftInfo, the envs it applies to and how each level >= 1 is made."""

    info: ShiftInfo
    applies: Callable[[str], bool]
    env_kwargs: Mapping[int, Mapping[str, Any]]
    wrap: Wrap | None


_FAMILIES: dict[str, ShiftFamily] = {}
_generation = [0]  # bumped by every (un)registration: envs.spec keys its cache of resolved ids on it


def generation() -> int:
    """A number that changes whenever a family is registered or removed."""
    return _generation[0]


def register_shift(name: str, description: str, levels: Mapping[int, str], *, env_ids: Iterable[str] | None = None,
                   applies: Callable[[str], bool] | None = None,
                   env_kwargs: Mapping[int, Mapping[str, Any]] | None = None, wrap: Wrap | None = None,
                   changes_scale: bool = False, replace: bool = False) -> ShiftInfo:
    """Register the shift family `name` for the envs it applies to; returns its ShiftInfo.

    :param name: the shift's name in `--shifts name=level` (letters, digits, underscores; not a built-in name)
    :param description: what the shift changes, in words (listed by `list_shifts` and the docs table)
    :param levels: level -> what the level means, e.g. {0: "g=9.8", 1: "g=12"}; level 0 (the unchanged env)
        and at least one level >= 1, all of 0-3
    :param env_ids: the registered ids the shift applies to (without a `module:` prefix); or give `applies`
    :param applies: a predicate on the registered id, instead of `env_ids`
    :param env_kwargs: level -> constructor arguments of that level (levels >= 1)
    :param wrap: `wrap(env, level, rng) -> env` for a level >= 1: wraps or changes one sub-env
    :param changes_scale: the shift changes the task's scale (e.g. its step budget): raw returns across its
        levels are not comparable
    :param replace: replace a family registered earlier under `name` (else that is a UserError)
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UserError(f"bad shift name {name!r}; valid: letters, digits and underscores, not starting with a digit")
    built_in = [n for names in BUILT_IN_SHIFTS.values() for n in names]
    if name in built_in:
        raise UserError(f"shift name {name!r} is a built-in shift; valid: a name other than {', '.join(built_in)}")
    if name in _FAMILIES and not replace:
        raise UserError(f"shift {name!r} is registered already; pass replace=True to replace it")
    levels = {int(level): str(text) for level, text in dict(levels).items()}
    if not set(levels) <= set(LEVELS) or 0 not in levels or len(levels) < 2:
        raise UserError(f"bad levels {sorted(levels)} of shift {name!r}; valid: 0 (the unchanged env) and at "
                         f"least one of 1, 2, 3")
    if (env_ids is None) == (applies is None):
        raise UserError(f"shift {name!r}: give env_ids or applies (one of them)")
    env_kwargs = {int(level): dict(kwargs) for level, kwargs in dict(env_kwargs or {}).items()}
    if not env_kwargs and wrap is None:
        raise UserError(f"shift {name!r}: give env_kwargs, wrap or both (how a level changes the env)")
    if not set(env_kwargs) <= set(levels) - {0}:
        raise UserError(f"env_kwargs of shift {name!r} has levels {sorted(env_kwargs)}; valid: its levels >= 1, "
                         f"{sorted(set(levels) - {0})}")
    if env_ids is not None:
        ids = frozenset([env_ids] if isinstance(env_ids, str) else env_ids)
        applies = ids.__contains__
    info = ShiftInfo(name, description, levels, changes_scale)
    _FAMILIES[name] = ShiftFamily(info, applies, env_kwargs, wrap)
    _generation[0] += 1
    return info


def unregister_shift(name: str) -> None:
    """Remove the family registered as `name` (ValueError, one line, if there is none)."""
    if name not in _FAMILIES:
        raise UserError(f"no shift {name!r} is registered; registered: {', '.join(_FAMILIES) or 'none'}")
    del _FAMILIES[name]
    _generation[0] += 1


def names() -> tuple[str, ...]:
    """Names of the registered families, in registration order."""
    return tuple(_FAMILIES)


def families(registered_id: str) -> dict[str, ShiftFamily]:
    """The registered families that apply to `registered_id`, in registration order."""
    return {name: family for name, family in _FAMILIES.items() if family.applies(registered_id)}


def env_kwargs(levels: Mapping[str, int], registered_id: str) -> dict[str, Any]:
    """Constructor arguments of the registered families at `levels` (level 0 and other shifts add nothing)."""
    out: dict[str, Any] = {}
    for name, family in families(registered_id).items():
        out.update(family.env_kwargs.get(levels.get(name, 0), {}))
    return out


def wrapper(levels: Mapping[str, int], registered_id: str, seed: int) -> Callable[[gym.Env, int], gym.Env] | None:
    """`wrap(env, env_index)` applying the registered families' wraps at `levels`, or None if none applies."""
    active = [(name, family.wrap, levels[name]) for name, family in families(registered_id).items()
              if family.wrap is not None and levels.get(name, 0) > 0]
    if not active:
        return None

    def wrap(env: gym.Env, env_index: int) -> gym.Env:
        for name, make, level in active:
            env = make(env, level, shift_rng(seed, env_index, name))
        return env
    return wrap
