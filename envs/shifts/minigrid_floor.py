"""MiniGrid shift `floor_noise`: coloured floor tiles that change what the agent sees, not what it can do."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
from minigrid.core.constants import COLOR_NAMES
from minigrid.core.world_object import Floor

from envs.shifts.base import ShiftInfo, shift_rng

FLOOR_FRACTION = {0: 0.0, 1: 0.1, 2: 0.25, 3: 0.5}
INFO = ShiftInfo(
    "floor_noise",
    "a fraction of the empty floor cells gets a coloured floor tile (random colour of 6), new each "
    "episode; tiles show in the observation as object 'floor' and do not change the dynamics",
    {lv: (f"{int(f * 100)}% of empty cells tiled" if f else "none") for lv, f in FLOOR_FRACTION.items()},
)


class FloorNoise(gym.Wrapper):
    """Covers a fraction of the empty floor cells with coloured `Floor` tiles at each reset.

    Tiles are visible in the observation (object 'floor', one of 6 colours) and change no dynamics:
    MiniGrid lets the agent walk over floors and ignores them for pickup/toggle; the one rule that
    differs, `drop` (only onto an empty cell), is handled in `step` by lifting the tile first.
    Positions and colours come from the wrapper's own random stream (seed, env_index); a reset with
    an explicit seed restarts that stream from the reset seed, so an episode seed fixes its tiles too
    (evaluation pairs episodes by seed, whichever sub-env runs them).
    """

    def __init__(self, env: gym.Env, fraction: float, seed: int, env_index: int):
        super().__init__(env)
        self.fraction = fraction
        self.rng = shift_rng(seed, env_index, "floor_noise")

    def reset(self, **kwargs: Any):
        if kwargs.get("seed") is not None:
            self.rng = shift_rng(kwargs["seed"], 0, "floor_noise")
        _, info = self.env.reset(**kwargs)
        base = self.env.unwrapped
        agent = tuple(int(v) for v in base.agent_pos)
        empty = [(x, y) for x in range(base.grid.width) for y in range(base.grid.height)
                 if base.grid.get(x, y) is None and (x, y) != agent]
        count = int(round(self.fraction * len(empty)))
        for k in self.rng.choice(len(empty), size=count, replace=False):
            base.grid.set(*empty[k], Floor(COLOR_NAMES[self.rng.integers(len(COLOR_NAMES))]))
        return base.gen_obs(), info

    def step(self, action: int):
        base = self.env.unwrapped
        if action != base.actions.drop or base.carrying is None:  # only a drop treats floors differently
            return self.env.step(action)
        front = tuple(int(v) for v in base.front_pos)
        tile = None
        if 0 <= front[0] < base.width and 0 <= front[1] < base.height and isinstance(base.grid.get(*front), Floor):
            tile = base.grid.get(*front)
            base.grid.set(*front, None)
        result = self.env.step(action)
        if tile is not None and base.grid.get(*front) is None:  # nothing was dropped: put the tile back
            base.grid.set(*front, tile)
        return result

    def __repr__(self) -> str:
        return f"<FloorNoise fraction={self.fraction}{self.env}>"
