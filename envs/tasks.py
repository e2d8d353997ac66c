"""The built-in MiniGrid tasks: small layouts with a target and distractors of controllable colours.

`RedBallDistractors-v0` (RedBallDistractorsEnv): go to the red ball; the mission never changes.
`PickupDistractors-v0` (PickupDistractorsEnv): "pick up the <colour> <type>" among distractors, in
the spirit of the paper's BabyAI pickup experiment (Goyal et al. 2021, §4.2): the target changes
every episode and is named only in the mission.
`MemoryDistractors-v0` (MemoryDistractorsEnv): a cue seen at the start of a corridor decides which
of two objects at its end to face; the mission never changes, so only a memory can solve it.
The room tasks share the layout generation (agent, target, distractors; redrawn until the target
can be reached); all three share the distractor draw (`draw_distractor`), whose random numbers are
taken at every shift level so that a shift changes only what it claims (level 0 is the unshifted env).
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Key, Wall, WorldObj
from minigrid.minigrid_env import MiniGridEnv

from envs.missions import COLOURS
from envs.shifts.minigrid_instructions import HELD_OUT_PAIRS, TARGET_TYPES, TRAIN_PAIRS
from envs.shifts.minigrid_layout import NOVEL_COLOURS, TRAIN_COLOURS, TRAIN_DISTRACTOR_TYPES
from rims_rl.errors import UserError

DISTRACTOR_TYPES = ("key", "ball", "box")
OBJECT_CLASSES = {"key": Key, "ball": Ball, "box": Box}
OTHER_TYPE = {"ball": "key", "key": "ball", "box": "key"}  # a distractor that would equal the target turns into this


def draw_distractor(env: MiniGridEnv, types: tuple[str, ...], novel_fraction: float,
                    novel_colours: tuple[str, ...]) -> tuple[str, str]:
    """(type, colour) of one distractor: a type of `types`, a colour of TRAIN_COLOURS, or with probability
    `novel_fraction` of `novel_colours`; the same random draws at every shift level."""
    kind = types[env._rand_int(0, len(types))]
    colour = TRAIN_COLOURS[env._rand_int(0, len(TRAIN_COLOURS))]
    novel_draw, pick = env.np_random.random(2)  # drawn at every level: layouts stay the same
    novel_colour = novel_colours[int(pick * len(novel_colours))]
    if novel_draw < novel_fraction:
        colour = novel_colour
    return kind, colour


class DistractorRoomEnv(MiniGridEnv):
    """One room of side `size` (walls included) with the agent, a target and `num_dists` distractors.

    Subclasses say what the target is (`_target`), which types distractors take (`distractor_types`)
    and when an episode ends. A distractor's colour is drawn from TRAIN_COLOURS, or with probability
    `novel_fraction` from `novel_colours`; it never equals the target (same colour and type).
    """

    distractor_types: tuple[str, ...] = DISTRACTOR_TYPES

    def __init__(self, mission_space: MissionSpace, size: int, num_dists: int, novel_fraction: float,
                 novel_colours: tuple[str, ...], max_steps: int, agent_view_size: int, **kwargs: Any):
        self.size, self.num_dists = size, num_dists
        self.novel_fraction, self.novel_colours = novel_fraction, tuple(novel_colours)
        self.target: tuple[str, str] = ("red", "ball")
        super().__init__(mission_space=mission_space, grid_size=size,
                         max_steps=max_steps, see_through_walls=True, agent_view_size=agent_view_size, **kwargs)

    def _target(self) -> tuple[str, str]:
        """(colour, type) of this episode's target."""
        raise NotImplementedError

    def _distractor(self) -> tuple[str, str]:
        """(type, colour) of one distractor (the same random draws at every shift level)."""
        return draw_distractor(self, self.distractor_types, self.novel_fraction, self.novel_colours)

    def _gen_grid(self, width: int, height: int) -> None:
        while True:
            self.grid = Grid(width, height)
            self.grid.wall_rect(0, 0, width, height)
            self.place_agent()
            self.target = self._target()
            colour, kind = self.target
            self.target_pos = self.place_obj(OBJECT_CLASSES[kind](colour))
            for _ in range(self.num_dists):
                kind, colour = self._distractor()
                if (colour, kind) == self.target:
                    kind = OTHER_TYPE[kind]
                self.place_obj(OBJECT_CLASSES[kind](colour))
            if self._target_reachable():
                break
        self.mission = self.observation_space["mission"].mission_func(*self._mission_args())

    def _mission_args(self) -> tuple[str, ...]:
        """Arguments of the mission space's mission_func for this episode."""
        return ()

    def _target_reachable(self) -> bool:
        """Breadth-first search from the agent over free cells to a cell next to the target."""
        start = tuple(int(v) for v in self.agent_pos)
        seen, todo = {start}, deque([start])
        while todo:
            x, y = todo.popleft()
            if abs(x - self.target_pos[0]) + abs(y - self.target_pos[1]) == 1:
                return True
            for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if (nx, ny) not in seen and self.grid.get(nx, ny) is None:
                    seen.add((nx, ny))
                    todo.append((nx, ny))
        return False


class RedBallDistractorsEnv(DistractorRoomEnv):
    """Go to the red ball in one small room with `num_dists` distractor objects.

    Like BabyAI GoToRedBall, but small (size 6: a 4x4 floor), three actions (left, right, forward),
    short episodes and controllable distractor colours, so an image-only agent can learn it in
    minutes. Success: the agent faces the red ball (reward 1 - 0.9 * steps / max_steps).

    novel_fraction: probability that a distractor takes a colour from `novel_colours` instead of
    TRAIN_COLOURS (the colour draws are made either way, so layouts do not change with it).
    novel_colours=("red",): red keys/boxes (a red ball distractor becomes a red key).
    """

    def __init__(self, size: int = 6, num_dists: int = 2, novel_fraction: float = 0.0,
                 novel_colours: tuple[str, ...] = NOVEL_COLOURS, max_steps: int | None = None,
                 agent_view_size: int = 7, **kwargs: Any):
        super().__init__(MissionSpace(mission_func=lambda: "go to the red ball"), size, num_dists, novel_fraction, novel_colours,
                         3 * (size - 2) ** 2 if max_steps is None else max_steps, agent_view_size, **kwargs)
        self.action_space = spaces.Discrete(3)

    def _target(self) -> tuple[str, str]:
        return ("red", "ball")

    def step(self, action: int):
        obs, reward, terminated, truncated, info = super().step(action)
        if tuple(self.front_pos) == tuple(self.target_pos):
            terminated, reward = True, self._reward()
        return obs, reward, terminated, truncated, info


class PickupDistractorsEnv(DistractorRoomEnv):
    """"pick up the <colour> <type>" in one small room among `num_dists` distractors.

    The target is a key, ball or box of one of the 6 colours, drawn each episode from the training
    pool TRAIN_PAIRS (12 colour-type pairs), or with probability `held_out_fraction` from
    HELD_OUT_PAIRS (the `novel_instructions` shift). Distractors are green/blue/purple keys and balls,
    never the target itself; with probability `novel_fraction` a distractor takes a colour from
    `novel_colours` and, if `novel_types` is given, a type from it (the `novel_distractors` shift).
    Four actions (left, right, forward, pickup). Picking up the target: success, reward
    1 - 0.9 * steps / max_steps; picking up anything else ends the episode with reward 0 (as BabyAI's
    PickupInstr). max_steps defaults to 4 * (size - 2) ** 2 (64 for the default 4x4 floor).
    """

    distractor_types = TRAIN_DISTRACTOR_TYPES

    def __init__(self, size: int = 6, num_dists: int = 2, novel_fraction: float = 0.0,
                 novel_colours: tuple[str, ...] = NOVEL_COLOURS, novel_types: tuple[str, ...] = (),
                 held_out_fraction: float = 0.0, max_steps: int | None = None, agent_view_size: int = 7,
                 **kwargs: Any):
        self.novel_types, self.held_out_fraction = tuple(novel_types), held_out_fraction
        mission_space = MissionSpace(mission_func=lambda colour, kind: f"pick up the {colour} {kind}",
                                     ordered_placeholders=[list(COLOURS), list(TARGET_TYPES)])
        super().__init__(mission_space, size, num_dists, novel_fraction, novel_colours,
                         4 * (size - 2) ** 2 if max_steps is None else max_steps, agent_view_size, **kwargs)
        self.action_space = spaces.Discrete(4)

    def _target(self) -> tuple[str, str]:
        pair = TRAIN_PAIRS[self._rand_int(0, len(TRAIN_PAIRS))]
        held_out_draw, pick = self.np_random.random(2)  # drawn at every level: layouts stay the same
        if held_out_draw < self.held_out_fraction:
            pair = HELD_OUT_PAIRS[int(pick * len(HELD_OUT_PAIRS))]
        return pair

    def _distractor(self) -> tuple[str, str]:
        kind, colour = super()._distractor()
        novel_draw, pick = self.np_random.random(2)  # drawn at every level: layouts stay the same
        if self.novel_types and novel_draw < self.novel_fraction:
            kind = self.novel_types[int(pick * len(self.novel_types))]
        return kind, colour

    def _mission_args(self) -> tuple[str, ...]:
        return self.target

    def step(self, action: int):
        obs, reward, terminated, truncated, info = super().step(action)
        carried: WorldObj | None = self.carrying
        if carried is not None:
            terminated = True
            reward = self._reward() if (carried.color, carried.type) == self.target else 0.0
        return obs, reward, terminated, truncated, info


CUE_COLOUR = "red"
CUE_TYPES = ("ball", "key")  # the cue is one of these; the choice objects are one of each, in this order north to south
MEMORY_HEIGHT = 5  # outer walls, a row of niches, the corridor, a row of niches, outer walls
CORRIDOR_Y = 2


class MemoryDistractorsEnv(MiniGridEnv):
    """Remember a cue across a corridor lined with distractors, then face the object that matches it.

    Layout (size 8; W wall, C cue, A agent facing east, d niches that hold the distractors, N/S the
    two choice objects, J the junction), a T-maze (Bakker 2002) with objects for its signs::

        W W W W W W W W
        W C d d d d N W
        W A . . . . J W
        W W d d d d S W
        W W W W W W W W

    The cue, a red ball or a red key drawn per episode, sits beside the start and leaves the agent's
    view (7x7, facing east) at its first step east. The choice objects are a red ball (north) and a red
    key (south) beside the junction; facing the one that matches the cue is success (reward
    1 - 0.9 * steps / max_steps), facing the other ends the episode with reward 0. The agent can only
    reach the junction facing east, and what it sees there never depends on the cue, so a policy
    without memory picks the right object half of the time at best. The sides are fixed so that the
    memory needed is the one bit "left or right"; with sides drawn per episode the agent would also have
    to combine the remembered cue with the sides it sees (an XOR), a harder problem for the same budget.
    Three actions (left, right, forward); the mission never changes and does not name the cue.

    `num_dists` distractors (keys, balls and boxes in TRAIN_COLOURS, or with probability
    `novel_fraction` in `novel_colours`) fill randomly chosen niches; niches without one are walls, so
    distractors never change where the agent can go. `size` is the width, walls included: the corridor
    and with it the memory span are size - 3 steps long. max_steps defaults to 4 * (size - 2), so that a
    uniformly random policy succeeds in about 4% of the episodes (size 8).
    """

    def __init__(self, size: int = 8, num_dists: int = 2, novel_fraction: float = 0.0,
                 novel_colours: tuple[str, ...] = NOVEL_COLOURS, max_steps: int | None = None,
                 agent_view_size: int = 7, **kwargs: Any):
        if not isinstance(size, int) or size < 5:
            raise UserError(f"bad size {size!r} for MemoryDistractors; valid: an int >= 5")
        self.size, self.num_dists = size, num_dists
        self.novel_fraction, self.novel_colours = novel_fraction, tuple(novel_colours)
        self.niches = [(x, y) for x in range(2, size - 2) for y in (CORRIDOR_Y - 1, CORRIDOR_Y + 1)]
        if not isinstance(num_dists, int) or not 0 <= num_dists <= len(self.niches):
            raise UserError(f"bad num_dists {num_dists!r} for MemoryDistractors of size {size}; "
                             f"valid: 0 to {len(self.niches)} (two niches per corridor cell)")
        self.cue: tuple[str, str] = (CUE_COLOUR, CUE_TYPES[0])
        self.cue_pos = (1, CORRIDOR_Y - 1)
        self.junction = (size - 2, CORRIDOR_Y)
        self.target_pos = self.wrong_pos = (size - 2, CORRIDOR_Y - 1)
        mission_space = MissionSpace(mission_func=lambda: "go to the matching object at the end of the hallway")
        super().__init__(mission_space=mission_space, width=size, height=MEMORY_HEIGHT,
                         max_steps=4 * (size - 2) if max_steps is None else max_steps,
                         see_through_walls=True, agent_view_size=agent_view_size, **kwargs)
        self.action_space = spaces.Discrete(3)

    def _gen_grid(self, width: int, height: int) -> None:
        cue_type = CUE_TYPES[self._rand_int(0, len(CUE_TYPES))]
        order = self.np_random.permutation(len(self.niches))
        # one draw per niche at every level: the first num_dists are used, so levels differ only in count
        draws = [draw_distractor(self, DISTRACTOR_TYPES, self.novel_fraction, self.novel_colours) for _ in self.niches]

        self.grid = Grid(width, height)
        for x in range(width):
            for y in range(height):
                if y != CORRIDOR_Y or x in (0, width - 1):
                    self.grid.set(x, y, Wall())
        for index, (kind, colour) in zip(order[:self.num_dists], draws):
            self.grid.set(*self.niches[index], OBJECT_CLASSES[kind](colour))
        self.cue = (CUE_COLOUR, cue_type)
        self.grid.set(*self.cue_pos, OBJECT_CLASSES[cue_type](CUE_COLOUR))
        x = self.junction[0]
        sides = ((x, CORRIDOR_Y - 1), (x, CORRIDOR_Y + 1))
        for kind, pos in zip(CUE_TYPES, sides):
            self.grid.set(*pos, OBJECT_CLASSES[kind](CUE_COLOUR))
        index = CUE_TYPES.index(cue_type)
        self.target_pos, self.wrong_pos = sides[index], sides[1 - index]
        self.agent_pos = np.array((1, CORRIDOR_Y))
        self.agent_dir = 0
        self.mission = self.observation_space["mission"].mission_func()

    def step(self, action: int):
        obs, reward, terminated, truncated, info = super().step(action)
        front = tuple(int(v) for v in self.front_pos)
        if front == self.target_pos:
            terminated, reward = True, self._reward()
        elif front == self.wrong_pos:
            terminated, reward = True, 0.0
        return obs, reward, terminated, truncated, info
