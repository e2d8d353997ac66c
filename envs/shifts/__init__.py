"""Registry of distractor shifts: which apply to an env, what each level means, and parsing.

The level tables live in one module per family (atari_visual, atari_dynamics, minigrid_layout,
minigrid_instructions, minigrid_floor), the families a user registers in `custom`; this registry only
collects them, so code, `list_shifts` and the docs table (`python -m envs.shifts`) read the same numbers.
Generic gymnasium envs have no built-in shifts: only registered families apply to them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from envs.errors import bad_value
from envs.ids import AtariGame
from envs.shifts import atari_dynamics, atari_visual, custom, minigrid_floor, minigrid_layout
from envs.shifts.base import BUILT_IN_SHIFTS, LEVELS, ShiftInfo
from envs.shifts.custom import register_shift, unregister_shift
from rims_rl.errors import UserError

if TYPE_CHECKING:
    from envs.spec import EnvSpec

SHIFT_NAMES = BUILT_IN_SHIFTS
ALL_SHIFTS = tuple(name for names in SHIFT_NAMES.values() for name in names)  # the built-in ones
VISUAL_SHIFTS = atari_visual.ORDER

__all__ = ["ALL_SHIFTS", "LEVELS", "ShiftInfo", "available_shifts", "list_shifts", "parse_shifts", "register_shift",
           "shift_names", "shift_table_markdown", "unregister_shift"]


def shift_names() -> tuple[str, ...]:
    """Every shift name: the built-in ones, then the registered families'."""
    return ALL_SHIFTS + custom.names()


def available_shifts(kind: str, registered_id: str, game: AtariGame | None = None) -> dict[str, ShiftInfo]:
    """Shifts that apply to the env `registered_id` of `kind` (`game`: its AtariGame) -> ShiftInfo.

    Built-in shifts first, in SHIFT_NAMES order, then the registered families (not for Atari ids).
    """
    if kind == "atari":
        found = {**atari_dynamics.infos(game.name, game.repeat_action_probability), **atari_visual.INFOS}
    elif kind == "minigrid":
        found = {**minigrid_layout.infos(registered_id), "floor_noise": minigrid_floor.INFO}
    else:
        found = {}
    out = {name: found[name] for name in SHIFT_NAMES.get(kind, ()) if name in found}
    if kind != "atari":
        out.update((name, family.info) for name, family in custom.families(registered_id).items())
    return out


def _spec(env: str | EnvSpec) -> EnvSpec:
    from envs.spec import as_spec  # envs.spec builds on this module: imported when called, not at import

    return as_spec(env)


def list_shifts(env: str | EnvSpec) -> dict[str, ShiftInfo]:
    """Shifts that apply to `env` (an id or its EnvSpec) -> ShiftInfo (name, description, levels {0..3: numbers});
    {} for an env without shifts."""
    return dict(_spec(env).shifts)


def _level(name: str, value: object) -> int:
    try:
        level = int(value)
        if level != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise bad_value(f"level for shift {name!r}:", value, LEVELS) from None
    if level not in LEVELS:
        raise bad_value(f"level for shift {name!r}:", level, LEVELS)
    return level


def parse_shifts(spec: str | Mapping[str, int] | None, env_id: str | EnvSpec | None = None) -> dict[str, int]:
    """"colour=2,sprites=1" or {"colour": 2} or None -> {"colour": 2, ...} (levels 0 kept).

    With `env_id` (an id or its EnvSpec), also checks that each shift applies to that env and has that
    level; any shift on an env without shifts is a UserError saying so.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {}
    if isinstance(spec, str):
        pairs = {}
        for item in spec.split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"bad shift {item.strip()!r}; write name=level, e.g. 'colour=2,sprites=1'")
            if name.strip() in pairs:
                raise UserError(f"shift {name.strip()!r} is given twice in {spec!r}; give each shift once")
            pairs[name.strip()] = value.strip()
    elif isinstance(spec, Mapping):
        pairs = dict(spec)
    else:
        raise UserError(f"bad shifts {spec!r}; give 'name=level,...', a dict or None")
    env = None if env_id is None else _spec(env_id)
    if env is not None and pairs and not env.shifts:
        raise UserError(f"{env.id} has no shifts (asked for {', '.join(pairs)}); shifts exist for Atari and "
                         f"MiniGrid/BabyAI ids, and for envs a registered family applies to (envs.register_shift)")
    out = {}
    known = shift_names()
    for name, value in pairs.items():
        if name not in known:
            raise bad_value("shift", name, known)
        out[name] = _level(name, value)
    if env is not None:
        for name, level in out.items():
            if name not in env.shifts:
                raise UserError(f"shift {name!r} does not apply to {env.id}; valid: {', '.join(env.shifts)}")
            if level not in env.shifts[name].levels:
                raise bad_value(f"level for shift {name!r} on {env.id}:", level, list(env.shifts[name].levels))
    return out


DOC_ENVS = ("ALE/Breakout-v5", "RedBallDistractors-v0", "PickupDistractors-v0", "MemoryDistractors-v0")
DOC_EXAMPLES = (  # extra rows: the same shift on other envs, where its numbers differ
    ("ALE/Freeway-v5", "flavour"), ("ALE/SpaceInvaders-v5", "flavour"), ("ALE/Pong-v5", "flavour"),
    ("ALE/MsPacman-v5", "flavour"), ("BreakoutNoFrameskip-v4", "sticky"),
    ("BabyAI-GoToRedBall-v0", "distractors"), ("MiniGrid-Fetch-8x8-N3-v0", "distractors"),
    ("BabyAI-GoToRedBall-v0", "size"), ("MiniGrid-DoorKey-5x5-v0", "size"),
)


def shift_table_markdown(env_ids: tuple[str, ...] = DOC_ENVS,
                         examples: tuple[tuple[str, str], ...] = DOC_EXAMPLES) -> str:
    """Markdown table of every shift of `env_ids` and its levels, plus `examples` rows (env, shift)
    for the same shift on other envs (the README/docs table)."""
    lines = ["| shift | env | what changes | level 0 | level 1 | level 2 | level 3 |",
             "|---|---|---|---|---|---|---|"]
    rows = [(env_id, info) for env_id in env_ids for info in list_shifts(env_id).values()]
    rows += [(env_id, list_shifts(env_id)[name]) for env_id, name in examples]
    order = shift_names()
    for env_id, info in sorted(rows, key=lambda row: order.index(row[1].name)):
        first = env_id in env_ids
        levels = [info.levels.get(lv, "-") for lv in LEVELS]
        lines.append(f"| {'`' + info.name + '`' if first else ''} | `{env_id}` | {info.description if first else '〃'} | "
                     + " | ".join(levels) + " |")
    return "\n".join(lines)
