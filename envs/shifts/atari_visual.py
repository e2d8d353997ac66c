"""Visual Atari shifts: changes of the RGB frame (210x160x3) before grayscale/resize.

Each shift acts in place on one sub-env's max-pooled RGB frame and never touches the emulator, so
rewards, lives and the game trajectory under identical actions stay the same. Per-episode
parameters (hue, texture, curtain position, sprite start) are drawn at `new_episode` from the
shift's own random stream and stay constant within the episode; noise and sprites move every step.
"""
from __future__ import annotations

import cv2
import numpy as np

from envs.shifts.base import ShiftInfo, shift_rng

COLOUR_STRENGTH = {0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3}
NOISE_SIGMA = {0: 0, 1: 8, 2: 16, 3: 32}
BACKGROUND = {0: None, 1: (40, 0), 2: (110, 0), 3: (110, 2)}  # (texture contrast, scroll px/step)
SPRITE_COUNT = {0: 0, 1: 2, 2: 4, 3: 8}
SPRITE_RADIUS = 5
OCCLUSION_FRACTION = {0: 0.0, 1: 0.1, 2: 0.25, 3: 0.4}
NOISE_BANK = 8  # pre-drawn noise frames per sub-env; one is picked (and rolled) at random per step

INFOS: dict[str, ShiftInfo] = {
    "colour": ShiftInfo(
        "colour",
        "hue rotation, brightness and contrast of the RGB frame, drawn once per episode "
        "(magnitudes uniform in [s/2, s], random sign)",
        {lv: (f"s={s}: hue +-{s * 180:.0f} deg, brightness +-{s * 255:.0f}, contrast x(1+-{s})" if s else "none")
         for lv, s in COLOUR_STRENGTH.items()},
    ),
    "noise": ShiftInfo(
        "noise",
        "Gaussian pixel noise on every RGB channel, new each step (a random one of 8 pre-drawn noise "
        "frames at a random row offset)",
        {lv: (f"sigma={s} (of 255)" if s else "none") for lv, s in NOISE_SIGMA.items()},
    ),
    "background": ShiftInfo(
        "background",
        "pixels of the game's background colour (most common colour of the episode's first frame) "
        "replaced by a random smooth colour texture, new per episode",
        {lv: ("none" if b is None else f"texture contrast {b[0]}, " + ("static" if not b[1] else f"scrolling down {b[1]} px/step"))
         for lv, b in BACKGROUND.items()},
    ),
    "sprites": ShiftInfo(
        "sprites",
        f"moving distractor balls (radius {SPRITE_RADIUS} px, random colours, bouncing) drawn over the frame",
        {lv: (f"{n} balls" if n else "none") for lv, n in SPRITE_COUNT.items()},
    ),
    "occlusion": ShiftInfo(
        "occlusion",
        "a grey vertical curtain over part of the screen at a random position, fixed per episode",
        {lv: (f"{int(f * 100)}% of the width" if f else "none") for lv, f in OCCLUSION_FRACTION.items()},
    ),
}
ORDER = ("background", "sprites", "occlusion", "colour", "noise")  # order in which shifts compose


class FrameShift:
    """Base: one visual shift of one sub-env at one level >= 1 (frames are HxWx3 uint8, in place)."""

    def __init__(self, level: int, rng: np.random.Generator):
        self.level = level
        self.rng = rng

    def new_episode(self, frame: np.ndarray) -> None:
        """Draw this episode's parameters; `frame` is the episode's first (unshifted) frame."""

    def apply(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level})"


class ColourShift(FrameShift):
    """out = contrast * (hue_rotation @ rgb - 128) + 128 + brightness, saturated to 0..255."""

    def new_episode(self, frame: np.ndarray) -> None:
        s = COLOUR_STRENGTH[self.level]
        hue, bright, contrast = self.rng.uniform(s / 2, s, 3) * self.rng.choice([-1.0, 1.0], 3)
        theta = hue * np.pi
        cos, sin, third = np.cos(theta), np.sin(theta), 1.0 / 3.0
        sq = np.sqrt(third)
        rotation = np.array([  # rotation by theta about the grey axis (1,1,1)
            [cos + (1 - cos) * third, third * (1 - cos) - sq * sin, third * (1 - cos) + sq * sin],
            [third * (1 - cos) + sq * sin, cos + third * (1 - cos), third * (1 - cos) - sq * sin],
            [third * (1 - cos) - sq * sin, third * (1 - cos) + sq * sin, cos + third * (1 - cos)],
        ])
        c = 1.0 + contrast
        offset = 128.0 * (1.0 - c) + bright * 255.0
        self.matrix = np.hstack([c * rotation, np.full((3, 1), offset)]).astype(np.float32)

    def apply(self, frame: np.ndarray) -> None:
        cv2.transform(frame, self.matrix, dst=frame)


class NoiseShift(FrameShift):
    """Adds zero-mean Gaussian noise (saturating). Noise comes from a per-env bank of frames of
    double height: each step takes a random frame and a random row offset (a copy-free view)."""

    def __init__(self, level: int, rng: np.random.Generator):
        super().__init__(level, rng)
        self.bank_pos: np.ndarray | None = None

    def new_episode(self, frame: np.ndarray) -> None:
        h = frame.shape[0]
        if self.bank_pos is None or self.bank_pos.shape[1:] != (2 * h, *frame.shape[1:]):
            noise = self.rng.normal(0.0, NOISE_SIGMA[self.level], (NOISE_BANK, 2 * h, *frame.shape[1:])).round()
            self.bank_pos = np.clip(noise, 0, 255).astype(np.uint8)
            self.bank_neg = np.clip(-noise, 0, 255).astype(np.uint8)

    def apply(self, frame: np.ndarray) -> None:
        k, row = self.rng.integers(NOISE_BANK), self.rng.integers(frame.shape[0])
        rows = slice(row, row + frame.shape[0])
        cv2.add(frame, self.bank_pos[k, rows], dst=frame)
        cv2.subtract(frame, self.bank_neg[k, rows], dst=frame)


class BackgroundShift(FrameShift):
    """Replaces the background colour by a smooth random texture (static or scrolling down)."""

    def new_episode(self, frame: np.ndarray) -> None:
        contrast, self.speed = BACKGROUND[self.level]
        packed = (frame[..., 0].astype(np.int32) << 16) | (frame[..., 1].astype(np.int32) << 8) | frame[..., 2]
        values, counts = np.unique(packed, return_counts=True)
        bg = int(values[counts.argmax()])
        self.colour = np.array([(bg >> 16) & 255, (bg >> 8) & 255, bg & 255], dtype=np.uint8)
        h, w = frame.shape[:2]
        coarse = self.rng.uniform(-1.0, 1.0, (h // 15 + 1, w // 15 + 1, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        centre = self.rng.uniform(contrast / 2, 255 - contrast / 2, 3)
        texture = np.clip(centre + smooth * contrast / 2, 0, 255).astype(np.uint8)
        self.texture = np.concatenate([texture, texture])  # [2H, W, 3]: any H consecutive rows tile
        self.offset = int(self.rng.integers(h))

    def apply(self, frame: np.ndarray) -> None:
        h = frame.shape[0]
        mask = cv2.inRange(frame, self.colour, self.colour)
        cv2.copyTo(self.texture[self.offset:self.offset + h], mask, frame)
        self.offset = (self.offset + self.speed) % h


class SpritesShift(FrameShift):
    """Bouncing filled circles of random colours drawn over the frame."""

    def new_episode(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        n = SPRITE_COUNT[self.level]
        self.size = np.array([w, h], dtype=np.float64)
        self.pos = self.rng.uniform(SPRITE_RADIUS, self.size - SPRITE_RADIUS, (n, 2))
        angle = self.rng.uniform(0, 2 * np.pi, n)
        speed = self.rng.uniform(1.0, 3.0, n)
        self.vel = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
        self.colours = [tuple(int(c) for c in self.rng.integers(64, 256, 3)) for _ in range(n)]

    def apply(self, frame: np.ndarray) -> None:
        for (x, y), colour in zip(self.pos, self.colours):
            cv2.circle(frame, (int(x), int(y)), SPRITE_RADIUS, colour, -1)
        self.pos += self.vel
        low, high = SPRITE_RADIUS, self.size - SPRITE_RADIUS
        bounce = (self.pos < low) | (self.pos > high)
        self.vel[bounce] *= -1
        self.pos = np.clip(self.pos, low, high)


class OcclusionShift(FrameShift):
    """A grey vertical band covering a fixed fraction of the width."""

    def new_episode(self, frame: np.ndarray) -> None:
        w = frame.shape[1]
        self.width = max(1, int(round(OCCLUSION_FRACTION[self.level] * w)))
        self.left = int(self.rng.integers(0, w - self.width + 1))

    def apply(self, frame: np.ndarray) -> None:
        frame[:, self.left:self.left + self.width] = 128


SHIFT_CLASSES: dict[str, type[FrameShift]] = {
    "colour": ColourShift, "noise": NoiseShift, "background": BackgroundShift,
    "sprites": SpritesShift, "occlusion": OcclusionShift,
}


class FrameShifter:
    """All visual shifts of one sub-env, composed in `ORDER`.

    levels: {shift name: level >= 1}; seed/env_index pick the shifts' own random streams.
    """

    def __init__(self, levels: dict[str, int], seed: int, env_index: int):
        self.shifts = [SHIFT_CLASSES[name](levels[name], shift_rng(seed, env_index, name))
                       for name in ORDER if levels.get(name, 0) > 0]

    def new_episode(self, frame: np.ndarray) -> None:
        for shift in self.shifts:
            shift.new_episode(frame)

    def apply(self, frame: np.ndarray) -> None:
        """Shift one RGB frame [H, W, 3] uint8 in place."""
        for shift in self.shifts:
            shift.apply(frame)

    def __repr__(self) -> str:
        return f"FrameShifter({self.shifts})"
