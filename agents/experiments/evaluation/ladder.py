"""The ladder of an evaluation: the settings (an env with some shifts at some levels) it walks.

A ladder always starts with the unshifted setting (``shift="none", level=0``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from envs import list_shifts, parse_shifts, resolve_env
from rims_rl.errors import UserError

UNSHIFTED = "none"


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


def _to_list(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return spec.split()
    return [str(s) for s in spec]


def ladder_settings(env_id: str, spec: str | Sequence[str] | None) -> list[Setting]:
    """The settings of a ladder, unshifted first.

    ``spec`` items: ``all`` (every shift of the env at every level > 0), ``none`` (unshifted only),
    a shift name (that shift at every level > 0), or a shifts spec such as ``distractors=2`` or
    ``colour=2,sprites=1`` (one setting). Unknown names raise UserError listing the valid ones.
    """
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
    available = list_shifts(env_id)
    names = [part.split("=")[0] for part in shift.split(",")]
    return any(name in available and available[name].changes_scale for name in names)


def has_success(env_id: str) -> bool:
    """True if episodes of ``env_id`` succeed or fail (MiniGrid/BabyAI: a positive return), False for Atari
    and other gymnasium envs, whose returns have no success notion."""
    return resolve_env(env_id).success
