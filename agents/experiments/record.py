"""Record one episode as GIF or MP4, with the RIMs activation strip drawn under each frame.

The strip shows the last ``STRIP_STEPS`` steps (time runs left to right, the current step is the
rightmost column), one row per RIM (numbered in the left margin): a bright cell = that RIM was active (in the top-k) at that
step, dark = inactive. It is read from ``model.policy.last_core_info.mask`` after each predict.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from agents.experiments.config import UserError
from agents.experiments.files import atomic_write_bytes

STRIP_STEPS = 48
ROW_HEIGHT = 12
LABEL_WIDTH = 14  # pixels left of the strip for the RIM numbers
ACTIVE = np.array([255, 176, 0], dtype=np.uint8)
INACTIVE = np.array([45, 45, 45], dtype=np.uint8)
BACKGROUND = np.array([0, 0, 0], dtype=np.uint8)


def current_mask(model) -> np.ndarray | None:
    """The active-RIM mask ``[K]`` (bool) of sub-env 0 at the last predict, or None for other cores."""
    info = getattr(model.policy, "last_core_info", None)
    mask = getattr(info, "mask", None)
    if mask is None:
        return None
    array = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if array.ndim == 3:  # [T, B, K] -> the last step
        array = array[-1]
    if array.ndim == 2:  # [B, K] -> sub-env 0
        array = array[0]
    return array.astype(bool)


def activation_strip(history: list[np.ndarray], width: int) -> np.ndarray:
    """RGB strip ``[K*ROW_HEIGHT + 2, width, 3]`` of the last (up to STRIP_STEPS) masks, each ``[K]``.

    RIM numbers (1..K) are written in a left margin; the newest step is the rightmost column.
    """
    import cv2

    k = len(history[-1])
    label = LABEL_WIDTH if width > 2 * LABEL_WIDTH else 0
    col = max(1, (width - label) // STRIP_STEPS)
    steps = min(STRIP_STEPS, (width - label) // col)
    recent = history[-steps:]
    cells = np.broadcast_to(BACKGROUND, (k, steps, 3)).copy()
    cells[:, steps - len(recent):] = np.where(np.stack(recent, axis=1)[:, :, None], ACTIVE, INACTIVE)
    image = np.repeat(np.repeat(cells, ROW_HEIGHT, axis=0), col, axis=1)
    image[ROW_HEIGHT - 1::ROW_HEIGHT] = BACKGROUND  # thin gaps between RIM rows
    strip = np.zeros((k * ROW_HEIGHT + 2, width, 3), dtype=np.uint8)
    strip[2:, width - image.shape[1]:] = image
    if label:
        for i in range(k):
            cv2.putText(strip, str(i + 1), (2, 2 + (i + 1) * ROW_HEIGHT - 2), cv2.FONT_HERSHEY_PLAIN, 0.7,
                        (200, 200, 200), 1)
    return strip


def compose_frame(frame: np.ndarray, history: list[np.ndarray] | None) -> np.ndarray:
    """The env frame ``[H, W, 3]`` with the activation strip appended below (if any)."""
    frame = np.asarray(frame, dtype=np.uint8)
    if not history:
        return frame
    return np.concatenate([frame, activation_strip(history, frame.shape[1])], axis=0)


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: int) -> Path:
    """Write RGB frames as GIF (imageio) or MP4 (OpenCV, mp4v codec), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        atomic_write_bytes(path, iio.imwrite("<bytes>", np.stack(frames), extension=".gif",
                                             duration=1000.0 / fps, loop=0))
        return path
    import tempfile

    import cv2

    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:  # OpenCV writes only to a path: write there, then atomically
        video = os.path.join(tmp, "episode.mp4")
        writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise UserError(f"cannot write {path}: OpenCV has no MP4 encoder here; use a .gif path")
        try:
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        atomic_write_bytes(path, Path(video).read_bytes())
    return path


def record_episode(model, env_id: str, shifts: dict[str, int] | None, out: str | os.PathLike, seed: int = 0,
                   deterministic: bool = False, max_steps: int = 500, fps: int = 8) -> dict[str, Any]:
    """Play one episode (at most ``max_steps`` steps) and write it to ``out``.

    Returns ``{"steps", "return", "has_strip"}``.
    """
    from envs import episode_starts, make_vec_env

    venv = make_vec_env(env_id, n_envs=1, seed=seed, shifts=shifts or None, training=False, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    history: list[np.ndarray] = []
    total, steps = 0.0, 0
    try:
        obs = venv.reset()
        state, start = None, np.ones(1, dtype=bool)
        while steps < max_steps:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            mask = current_mask(model)
            if mask is not None:
                history.append(mask)
            frames.append(compose_frame(venv.get_images()[0], history))
            obs, reward, done, infos = venv.step(action)
            steps += 1
            total += float(reward[0])
            start = episode_starts(done, infos)  # a lost Atari life resets the core, as in training
            if done[0]:
                total = float(infos[0].get("episode", {}).get("r", total))
                break
    finally:
        venv.close()
    write_video(frames, out, fps)
    return {"steps": steps, "return": total, "has_strip": bool(history)}
