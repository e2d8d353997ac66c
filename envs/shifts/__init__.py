"""Registry of distractor shifts: which apply to an env, what each level means, and parsing.

The level tables live in one module per family (atari_visual, atari_dynamics, minigrid_layout,
minigrid_instructions, minigrid_floor); this registry only collects them, so code, `list_shifts` and the docs table
(`python -m envs.shifts`) read the same numbers.
"""
from __future__ import annotations

from collections.abc import Mapping

from envs.ids import atari_game, env_kind
from envs.shifts import atari_dynamics, atari_visual, minigrid_floor, minigrid_layout
from envs.errors import bad_value
from envs.shifts.base import LEVELS, ShiftInfo
from rims_rl.errors import UserError

SHIFT_NAMES: dict[str, tuple[str, ...]] = {
    "atari": ("flavour", "sticky", "colour", "noise", "background", "sprites", "occlusion"),
    "minigrid": ("distractors", "novel_distractors", "size", "novel_instructions", "floor_noise"),
}
ALL_SHIFTS = tuple(name for names in SHIFT_NAMES.values() for name in names)
VISUAL_SHIFTS = atari_visual.ORDER

__all__ = ["ALL_SHIFTS", "LEVELS", "ShiftInfo", "list_shifts", "parse_shifts", "shift_table_markdown"]


def list_shifts(env_id: str) -> dict[str, ShiftInfo]:
    """Shifts that apply to `env_id` -> ShiftInfo (name, description, levels {0..3: numbers})."""
    if env_kind(env_id) == "atari":
        game, sticky, _ = atari_game(env_id)
        found = {**atari_dynamics.infos(game, sticky), **atari_visual.INFOS}
    else:
        found = {**minigrid_layout.infos(env_id), "floor_noise": minigrid_floor.INFO}
    order = SHIFT_NAMES[env_kind(env_id)]
    return {name: found[name] for name in order if name in found}


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


def parse_shifts(spec: str | Mapping[str, int] | None, env_id: str | None = None) -> dict[str, int]:
    """"colour=2,sprites=1" or {"colour": 2} or None -> {"colour": 2, ...} (levels 0 kept).

    With `env_id`, also checks that each shift applies to that env and has that level.
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
    out = {}
    for name, value in pairs.items():
        if name not in ALL_SHIFTS:
            raise bad_value("shift", name, ALL_SHIFTS)
        out[name] = _level(name, value)
    if env_id is not None:
        available = list_shifts(env_id)
        for name, level in out.items():
            if name not in available:
                raise UserError(f"shift {name!r} does not apply to {env_id}; valid: {', '.join(available)}")
            if level not in available[name].levels:
                raise bad_value(f"level for shift {name!r} on {env_id}:", level, list(available[name].levels))
    return out


DOC_ENVS = ("ALE/Breakout-v5", "RedBallDistractors-v0", "PickupDistractors-v0")
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
    for env_id, info in sorted(rows, key=lambda row: ALL_SHIFTS.index(row[1].name)):
        first = env_id in env_ids
        levels = [info.levels.get(lv, "-") for lv in LEVELS]
        lines.append(f"| {'`' + info.name + '`' if first else ''} | `{env_id}` | {info.description if first else '〃'} | "
                     + " | ".join(levels) + " |")
    return "\n".join(lines)
