"""MiniGrid shifts made through the env constructor: `distractors`, `novel_distractors`, `size`,
`novel_instructions` (its table lives in `minigrid_instructions`).

Which of them apply is read from the env class's constructor arguments: `num_dists`/`numObjs`
(distractor count), `size`/`room_size` (grid or room side), `novel_fraction` (the built-in tasks'
distractor colours, and types where the task takes `novel_types`), `held_out_fraction` (missions).
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from envs.shifts import minigrid_instructions
from envs.shifts.base import ShiftInfo

COUNT_KWARGS = ("num_dists", "numObjs")
SIZE_KWARGS = ("size", "room_size")
TRAIN_COLOURS = ("green", "blue", "purple")  # distractor colours of the built-in task in training
NOVEL_COLOURS = ("yellow", "grey")  # on no object in training
NOVEL = {  # level -> (share of distractors with a never-seen colour, those colours)
    0: (0.0, NOVEL_COLOURS),
    1: (0.5, NOVEL_COLOURS),
    2: (1.0, NOVEL_COLOURS),
    3: (1.0, ("red",)),  # red keys/boxes: the target's colour, never on a distractor in training
}
TRAIN_DISTRACTOR_TYPES = ("key", "ball")  # pickup task: object types of distractors in training
NOVEL_TYPES = ("box",)  # pickup task: a box is only ever the target in training
PICKUP_NOVEL = {  # level -> (share of novel distractors, their colours, their object types (() = as in training))
    0: (0.0, NOVEL_COLOURS, ()),
    1: (0.5, NOVEL_COLOURS, ()),
    2: (1.0, NOVEL_COLOURS, ()),
    3: (1.0, NOVEL_COLOURS, NOVEL_TYPES),
}
# env id -> (novel_distractors ladder, what distractors look like in training); other envs: NOVEL
NOVEL_LADDERS = {"PickupDistractors-v0": (PICKUP_NOVEL, f"{'/'.join(TRAIN_COLOURS)} {'s and '.join(TRAIN_DISTRACTOR_TYPES)}s")}
# env id -> what red distractors (NOVEL's top level) are there; other envs: RED_NOTE
RED_NOTE = "keys/boxes in the target's colour"
RED_NOTES = {"MemoryDistractors-v0": "keys/balls/boxes in the cue's colour: most look like a possible cue"}
SIZE_DESCRIPTIONS = {  # env id -> what its `size` is; other envs: the side of the grid or room
    "MemoryDistractors-v0": "width of the grid (size, walls included): the corridor, and with it the memory "
                            "span, is size - 3 steps long",
}


def novel_ladder(env_id: str) -> tuple[dict[int, tuple[float, tuple[str, ...], tuple[str, ...]]], str]:
    """(level -> (share of novel distractors, their colours, their types or ()), training description)."""
    return NOVEL_LADDERS.get(env_id) or ({lv: (f, c, ()) for lv, (f, c) in NOVEL.items()}, ", ".join(TRAIN_COLOURS))

COUNT_LADDERS = {"RedBallDistractors-v0": (2, 4, 6, 8), "PickupDistractors-v0": (2, 4, 6, 8),
                 "MemoryDistractors-v0": (2, 4, 6, 8)}  # per-env tables win over the rule


def count_ladder(env_id: str, n: int) -> dict[int, int]:
    """Distractor count per level: COUNT_LADDERS[env_id], else n, 4n/3, 5n/3, 2n (rounded).

    BabyAI rejects layouts with unreachable objects, so a room cannot take many more objects:
    GoToRedBall (8x8) resets in 2 ms with 7 distractors, 70 ms with 14 and hangs with 18.
    """
    ladder = COUNT_LADDERS.get(env_id) or (n, round(4 * n / 3), round(5 * n / 3), 2 * n)
    return dict(enumerate(ladder))


def size_ladder(s: int) -> dict[int, int]:
    """Grid/room side per level: s, s+1, s+3, max(16, 2s) (DoorKey: 5 -> 6 -> 8 -> 16)."""
    return {0: s, 1: s + 1, 2: s + 3, 3: max(16, 2 * s)}


@lru_cache(maxsize=None)
def constructor_defaults(env_id: str) -> dict[str, Any]:
    """Constructor arguments of the env's class with the values `env_id` registers."""
    spec = gym.spec(env_id)
    creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
    params = inspect.signature(creator.__init__ if inspect.isclass(creator) else creator).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    defaults.update(spec.kwargs)
    return defaults


def _first(names: tuple[str, ...], defaults: dict[str, Any]) -> str | None:
    return next((n for n in names if isinstance(defaults.get(n), int)), None)


def infos(env_id: str) -> dict[str, ShiftInfo]:
    """The constructor shifts that apply to `env_id`, with its numbers per level."""
    defaults = constructor_defaults(env_id)
    out = {}
    count = _first(COUNT_KWARGS, defaults)
    if count:
        out["distractors"] = ShiftInfo(
            "distractors", f"number of distractor objects ({count})",
            {lv: f"{count}={n}" for lv, n in count_ladder(env_id, defaults[count]).items()})
    if "novel_fraction" in defaults:
        ladder, training = novel_ladder(env_id)
        out["novel_distractors"] = ShiftInfo(
            "novel_distractors", "distractors take colours never seen on distractors in training"
                                 + (", at the top level also an object type" if ladder[3][2] else "")
                                 + f" (training: {training})",
            {lv: ("none" if not f else f"{int(f * 100)}% of distractors {'/'.join(c)}"
                  + (f" {'/'.join(t)}es" if t else "")
                  + (f" ({RED_NOTES.get(env_id, RED_NOTE)})" if c == ("red",) else ""))
             for lv, (f, c, t) in ladder.items()})
    size = _first(SIZE_KWARGS, defaults)
    if size:
        out["size"] = ShiftInfo(
            "size", SIZE_DESCRIPTIONS.get(env_id, f"side of the grid or room ({size}, walls included)"),
            {lv: f"{size}={s}" for lv, s in size_ladder(defaults[size]).items()}, changes_scale=True)
    if minigrid_instructions.applies(defaults):
        out["novel_instructions"] = minigrid_instructions.INFO
    return out


def env_kwargs(env_id: str, levels: dict[str, int]) -> dict[str, Any]:
    """Constructor overrides for the given shift levels (only shifts of this module, levels >= 1)."""
    defaults = constructor_defaults(env_id)
    kwargs: dict[str, Any] = {}
    if levels.get("distractors", 0):
        count = _first(COUNT_KWARGS, defaults)
        kwargs[count] = count_ladder(env_id, defaults[count])[levels["distractors"]]
    if levels.get("size", 0):
        size = _first(SIZE_KWARGS, defaults)
        kwargs[size] = size_ladder(defaults[size])[levels["size"]]
    if levels.get("novel_distractors", 0):
        fraction, colours, types = novel_ladder(env_id)[0][levels["novel_distractors"]]
        kwargs.update(novel_fraction=fraction, novel_colours=colours, **({"novel_types": types} if types else {}))
    kwargs.update(minigrid_instructions.env_kwargs(levels))
    return kwargs
