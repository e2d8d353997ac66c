"""Atari shifts of the game itself: `flavour` (ALE game mode/difficulty) and `sticky` actions."""
from __future__ import annotations

from functools import lru_cache

from envs.shifts.base import ShiftInfo

STICKY_INCREASE = {0: 0.0, 1: 0.1, 2: 0.25, 3: 0.5}

# (mode, difficulty) of levels 1..3 for games used by Farebrother et al. (2018); other games take
# the first three non-default pairs of `generic_flavours`.
FLAVOURS: dict[str, tuple[tuple[int, int], ...]] = {
    "breakout": ((0, 1), (12, 0), (12, 1)),
    "freeway": ((1, 0), (4, 0), (4, 1)),
    "space_invaders": ((1, 0), (1, 1), (9, 1)),
    "pong": ((0, 1), (1, 0), (1, 1)),
}


@lru_cache(maxsize=None)
def available_modes(game: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(modes, difficulties) the ROM of `game` (snake_case ALE name) offers."""
    import ale_py
    from ale_py import roms

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(roms.get_rom_path(game))
    return tuple(int(m) for m in ale.getAvailableModes()), tuple(int(d) for d in ale.getAvailableDifficulties())


def generic_flavours(game: str) -> tuple[tuple[int, int], ...]:
    """Non-default (mode, difficulty) pairs: harder difficulty first, then other modes, then both."""
    modes, diffs = available_modes(game)
    pairs = [(modes[0], d) for d in diffs[1:]] + [(m, diffs[0]) for m in modes[1:]]
    pairs += [(m, d) for m in modes[1:] for d in diffs[1:]]
    return tuple(pairs)


def flavour_table(game: str) -> dict[int, tuple[int, int] | None]:
    """Level -> (mode, difficulty); level 0 -> None (the game's default). May have < 3 levels."""
    pairs = FLAVOURS.get(game) or generic_flavours(game)[:3]
    return {0: None, **{level: pair for level, pair in enumerate(pairs, start=1)}}


def sticky_table(base_probability: float) -> dict[int, float]:
    """Level -> repeat-action probability (base: 0.25 for v5 ids, 0.0 for NoFrameskip-v4 ids)."""
    return {level: round(base_probability + inc, 4) for level, inc in STICKY_INCREASE.items()}


def infos(game: str, base_sticky: float) -> dict[str, ShiftInfo]:
    """The dynamics shifts that apply to `game` (flavour only if the ROM has other modes)."""
    out = {
        "sticky": ShiftInfo(
            "sticky", "probability that the emulator repeats the previous action on each frame",
            {lv: f"p={p}" for lv, p in sticky_table(base_sticky).items()}),
    }
    table = flavour_table(game)
    if len(table) > 1:
        out["flavour"] = ShiftInfo(
            "flavour", "ALE game mode/difficulty (Farebrother et al. 2018); needs the per-env Python path",
            {lv: ("default mode and difficulty" if pair is None else f"mode={pair[0]}, difficulty={pair[1]}")
             for lv, pair in table.items()})
    return out
