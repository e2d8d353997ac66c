"""Record one episode as GIF or MP4, with the RIMs activation strip and a caption under each frame.

Under each frame:
- the activation strip (rims core only): one row per RIM (numbered in the left margin), one
  column per step, time running left to right up to the current step (the rightmost filled
  column); dark = that RIM was active (in the top-k) at that step, light = inactive: the colours
  of the TensorBoard raster ``rollout_rims/activation_raster``. Columns are as wide as the episode allows
  (at most ``STRIP_STEPS`` steps are shown, the latest ones), so short episodes stay readable;
- a legend of the two colours (rims core only);
- a caption: step counter, the action taken (number and name) and its reward, and the return so far.
For an agent that reads the mission (dict observations), the mission text is written in a band
above each frame.

The mask is read from ``model.policy.last_core_info.mask`` after each predict.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import cv2
import imageio.v3 as iio
import numpy as np

from agents.checks import check_dir, check_seed
from agents.experiments.config import EVAL_SEED
from agents.experiments.devices import resolve_device, torch_threads
from agents.experiments.evaluation.episodes import EVAL_THREADS, reads_mission
from agents.experiments.files import atomic_write_bytes
from agents.experiments.runs import CONFIG_FILE, load_model, read_run_config, resolve_model_path
from agents.rims_logging import ACTIVE_RGB, INACTIVE_RGB
from agents.text_band import text_band
from envs import episode_starts, make_vec_env, parse_shifts
from envs.missions import decode_mission
from rims_rl.errors import UserError

STRIP_STEPS = 48
ROW_HEIGHT = 12
LABEL_WIDTH = 14  # pixels left of the strip for the RIM numbers
TEXT_HEIGHT = 14  # one caption or legend line
ACTIVE = np.array(ACTIVE_RGB, dtype=np.uint8)
INACTIVE = np.array(INACTIVE_RGB, dtype=np.uint8)
BACKGROUND = np.array([70, 70, 70], dtype=np.uint8)  # grey: both the dark and the light cells stay visible
TEXT = (230, 230, 230)
MIN_WIDTH = 320  # smaller env frames (MiniGrid 192 px, Atari 160 px) are enlarged by a whole factor


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


def _put_text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.35) -> None:
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, 1, cv2.LINE_AA)


def activation_strip(history: list[np.ndarray], width: int, window: int | None = None) -> np.ndarray:
    """RGB strip ``[K*ROW_HEIGHT + 2, width, 3]`` of the last masks (each ``[K]``), newest rightmost.

    ``window``: how many steps the strip's width is divided into (default STRIP_STEPS; pass the
    episode length for short episodes so each step gets a wide column). RIM numbers (1..K) are
    written in a left margin.
    """
    k = len(history[-1])
    label = LABEL_WIDTH if width > 2 * LABEL_WIDTH else 0
    window = max(1, min(window or STRIP_STEPS, STRIP_STEPS))
    col = max(1, (width - label) // window)
    steps = min(window, (width - label) // col)
    recent = history[-steps:]
    cells = np.broadcast_to(BACKGROUND, (k, steps, 3)).copy()
    cells[:, :len(recent)] = np.where(np.stack(recent, axis=1)[:, :, None], ACTIVE, INACTIVE)
    image = np.repeat(np.repeat(cells, ROW_HEIGHT, axis=0), col, axis=1)
    image[ROW_HEIGHT - 1::ROW_HEIGHT] = BACKGROUND  # thin gaps between RIM rows
    if col >= 4:
        image[:, col - 1::col] = BACKGROUND  # and between steps, where columns are wide
    strip = np.broadcast_to(BACKGROUND, (k * ROW_HEIGHT + 2, width, 3)).copy()
    strip[2:, label:label + image.shape[1]] = image
    if label:
        for i in range(k):
            _put_text(strip, str(i + 1), 2, 2 + (i + 1) * ROW_HEIGHT - 3)
    return strip


def legend(width: int) -> np.ndarray:
    """One line: a dark swatch "active", a light swatch "inactive" (the raster's colours)."""
    line = np.broadcast_to(BACKGROUND, (TEXT_HEIGHT, width, 3)).copy()
    x = 2
    for colour, name in ((ACTIVE, "active RIM"), (INACTIVE, "inactive")):
        line[3:TEXT_HEIGHT - 3, x:x + 8] = colour
        _put_text(line, name, x + 11, TEXT_HEIGHT - 4)
        x += 11 + 7 * len(name) + 8
    return line


def caption(width: int, step: int, steps: int, action: str, reward: float, total: float) -> np.ndarray:
    """Two lines: "step s/n  return R" and "action A  reward r"."""
    lines = np.broadcast_to(BACKGROUND, (2 * TEXT_HEIGHT, width, 3)).copy()
    _put_text(lines, f"step {step}/{steps}  return {total:.3g}", 2, TEXT_HEIGHT - 4)
    _put_text(lines, f"action {action}  reward {reward:.3g}", 2, 2 * TEXT_HEIGHT - 4)
    return lines


def mission_band(text: str, width: int) -> np.ndarray:
    """Band ``[lines * TEXT_HEIGHT + 4, width, 3]`` with the mission ``text``, wrapped at words."""
    return text_band(text, width, TEXT_HEIGHT, tuple(int(c) for c in BACKGROUND), TEXT)


def compose_frame(frame: np.ndarray, history: list[np.ndarray] | None, window: int | None = None,
                  text: np.ndarray | None = None, mission: str | None = None) -> np.ndarray:
    """The env frame ``[H, W, 3]`` with the mission band above it (if any ``mission``), the activation
    strip and its legend (if any ``history``) and the caption image ``text`` (if any) below."""
    frame = np.asarray(frame, dtype=np.uint8)
    parts = [mission_band(mission, frame.shape[1]), frame] if mission else [frame]
    if history:
        parts += [activation_strip(history, frame.shape[1], window), legend(frame.shape[1])]
    if text is not None:
        parts.append(text)
    return np.concatenate(parts, axis=0)


def action_names(venv) -> list[str] | None:
    """Names of the env's discrete actions (MiniGrid ``Actions``, ALE action meanings), or None."""
    try:
        unwrapped = venv.get_attr("unwrapped", [0])[0]
    except (AttributeError, IndexError):
        return None
    if hasattr(unwrapped, "get_action_meanings"):
        return [m.lower() for m in unwrapped.get_action_meanings()]
    actions = getattr(unwrapped, "actions", None)
    if actions is not None:
        return [a.name for a in actions]
    return None


def _action_text(action: Any, names: Sequence[str] | None) -> str:
    value = int(np.asarray(action).reshape(-1)[0])
    return f"{value} ({names[value]})" if names is not None and 0 <= value < len(names) else str(value)


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: int) -> Path:
    """Write RGB frames as GIF (imageio) or MP4 (OpenCV, mp4v codec), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        data = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return atomic_write_bytes(path, data)
    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:  # OpenCV writes to a file name; the result is moved atomically
        video = Path(tmp) / "video.mp4"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise UserError(f"cannot write {path}: OpenCV has no MP4 encoder here; use a .gif path")
        try:
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        return atomic_write_bytes(path, video.read_bytes())


def record_episode(model, env_id: str, shifts: dict[str, int] | None, out: str | os.PathLike, seed: int = 0,
                   deterministic: bool = False, max_steps: int = 500, fps: int = 8) -> dict[str, Any]:
    """Play one episode (at most ``max_steps`` steps) and write it to ``out``.

    Returns ``{"steps", "return", "has_strip", "missions"}`` (the missions shown, in order; [] for an
    agent that does not read the mission).
    """
    with_mission = reads_mission(model)
    venv = make_vec_env(env_id, n_envs=1, seed=seed, shifts=shifts or None, training=False, render_mode="rgb_array",
                        instructions=with_mission)
    raw: list[np.ndarray] = []
    shown: list[str | None] = []
    history: list[np.ndarray] = []
    actions: list[str] = []
    rewards: list[float] = []
    total, steps = 0.0, 0
    try:
        names = action_names(venv)
        obs = venv.reset()
        state, start = None, np.ones(1, dtype=bool)
        while steps < max_steps:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            mask = current_mask(model)
            if mask is not None:
                history.append(mask)
            raw.append(np.asarray(venv.get_images()[0], dtype=np.uint8))
            shown.append(decode_mission(obs["mission"][0]) if with_mission else None)
            actions.append(_action_text(action, names))
            obs, reward, done, infos = venv.step(action)
            steps += 1
            total += float(reward[0])
            rewards.append(float(reward[0]))
            start = episode_starts(done, infos)  # a lost Atari life resets the core, as in training
            if done[0]:
                total = float(infos[0].get("episode", {}).get("r", total))
                break
    finally:
        venv.close()
    frames, running = [], 0.0
    for t, frame in enumerate(raw):
        scale = max(1, -(-MIN_WIDTH // frame.shape[1]))
        frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
        running += rewards[t]
        text = caption(frame.shape[1], t + 1, steps, actions[t], rewards[t], running)
        frames.append(compose_frame(frame, history[:t + 1], window=steps, text=text, mission=shown[t]))
    write_video(frames, out, fps)
    missions = list(dict.fromkeys(m for m in shown if m))
    return {"steps": steps, "return": total, "has_strip": bool(history), "missions": missions}


def record_run(
    model: str | os.PathLike,
    out: str | os.PathLike | None = None,
    shifts: str | None = None,
    seed: int = EVAL_SEED,
    deterministic: bool = False,
    max_steps: int = 500,
    fps: int = 8,
    env: str | None = None,
    device: str = "auto",
) -> tuple[Path, dict[str, Any]]:
    """Record one episode of ``model`` (a model file or a run dir; ``env`` default: the run's) to ``out``
    (default ``<run dir>/episode.gif``); the path and :func:`record_episode`'s summary. Every input is
    checked (UserError) before anything is written."""
    model_file, run_dir = resolve_model_path(model)
    if env is None:
        if run_dir is None:
            raise UserError(f"--env is required: {model_file} does not lie in a run dir with {CONFIG_FILE}")
        env = read_run_config(run_dir)["env"]
    shift_map = parse_shifts(shifts, env)
    out_path = Path(out) if out is not None else (run_dir or model_file.parent) / "episode.gif"
    if out_path.suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--out must end in .gif or .mp4, got {out_path.name!r}")
    if max_steps < 1 or fps < 1:
        raise UserError(f"--max-steps and --fps must be >= 1, got {max_steps} and {fps}")
    check_seed(seed)
    check_dir(out_path.parent, "--out", (out_path.name,))
    agent = load_model(model_file, env_id=env, device=resolve_device(device))
    with torch_threads(EVAL_THREADS):
        info = record_episode(agent, env, shift_map, out_path, seed=seed, deterministic=deterministic,
                              max_steps=max_steps, fps=fps)
    return out_path, info
