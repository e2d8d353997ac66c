"""MiniGrid shift `novel_instructions`: missions naming colour-object pairs held out of training.

Applies to envs whose constructor takes `held_out_fraction` (the built-in pickup task). The
training mission pool is TRAIN_PAIRS; HELD_OUT_PAIRS (one pair per colour, each object type twice)
never appear in a training mission, although each of their colours and types does, in other pairs.
Level n makes that share of the episodes' missions name a held-out pair.
"""
from __future__ import annotations

from itertools import product

from envs.missions import COLOURS
from envs.shifts.base import ShiftInfo

TARGET_TYPES = ("key", "ball", "box")
ALL_PAIRS = tuple(product(COLOURS, TARGET_TYPES))  # (colour, object type)
HELD_OUT_PAIRS = (("red", "box"), ("green", "key"), ("blue", "ball"),
                  ("purple", "box"), ("yellow", "key"), ("grey", "ball"))
TRAIN_PAIRS = tuple(pair for pair in ALL_PAIRS if pair not in HELD_OUT_PAIRS)
HELD_OUT_FRACTION = {0: 0.0, 1: 0.25, 2: 0.5, 3: 1.0}
INFO = ShiftInfo(
    "novel_instructions",
    f"the mission names a colour-object pair never named in training ({len(HELD_OUT_PAIRS)} held out: "
    + ", ".join(f"{c} {t}" for c, t in HELD_OUT_PAIRS) + f"; training: the other {len(TRAIN_PAIRS)})",
    {lv: (f"{int(f * 100)}% of missions held out" if f else "training pairs only")
     for lv, f in HELD_OUT_FRACTION.items()},
)


def applies(defaults: dict) -> bool:
    """Whether an env with these constructor defaults has the shift."""
    return "held_out_fraction" in defaults


def env_kwargs(levels: dict[str, int]) -> dict[str, float]:
    """Constructor override for the shift's level (nothing at level 0)."""
    level = levels.get("novel_instructions", 0)
    return {"held_out_fraction": HELD_OUT_FRACTION[level]} if level else {}
