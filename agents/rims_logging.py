"""RIMs activation statistics for SB3's logger: per-RIM activation frequency, switch rate, raster image.

``ActivationRecorder.add(mask [B, K], episode_starts [B])`` is called once per rollout step;
``record(logger, with_raster)`` writes at the end of the rollout:
- ``rollout_rims/active_frac_<i>``: fraction of (step, env) pairs in which RIM i was active;
- ``rollout_rims/switch_rate``: fraction of steps (inside an episode) whose active set differs from the
  previous step's;
- ``rollout_rims/activation_raster`` (SB3 ``Image``, TensorBoard only): RIM (rows) x time (columns) for env 0;
  dark = active, light = inactive, a red column marks an episode start; a legend band below says so.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from stable_baselines3.common.logger import Image, Logger

from agents.text_band import text_band

# TensorBoard groups cards by a tag's first path component, sorted ("rollout/" before "rollout_rims/"), and
# opens the first two: SB3's learning curves (rollout/) first, then the RIMs activity measured on them.
GROUP = "rollout_rims"

RASTER_CELL = (8, 2)  # pixels per (RIM row, time step)
MIN_RASTER_WIDTH = 256  # a short rollout's columns are widened (whole pixels) so that the legend fits beside them
# Colours of the raster, shared with the `record` video strip. Active is dark: TensorBoard shows images on
# a white card, on which white active cells would not read.
ACTIVE_RGB = (30, 30, 30)
INACTIVE_RGB = (225, 225, 225)
START_ACTIVE_RGB = (150, 0, 0)
START_INACTIVE_RGB = (255, 175, 175)
BAND_RGB = (255, 255, 255)  # the legend band and the 1-px gaps between RIM rows
TEXT_RGB = (0, 0, 0)
LEGEND_LINE = 12  # pixels per legend line


def activation_raster(mask: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """RGB image ``[K*8 + legend, T*c, 3]`` uint8 of a mask ``[T, K]`` (bool): one 8-px row per RIM (RIM 0
    on top), one column of ``c`` px per step (2, wider for short rollouts), dark = active, light =
    inactive; episode-start columns are red (dark red = active, light red = inactive); below, a legend
    band saying so."""
    active = mask.T.astype(bool)  # [K, T]
    image = np.where(active[:, :, None], ACTIVE_RGB, INACTIVE_RGB).astype(np.uint8)
    starts = episode_starts.astype(bool)
    image[:, starts] = np.where(active[:, starts, None], START_ACTIVE_RGB, START_INACTIVE_RGB).astype(np.uint8)
    columns = max(RASTER_CELL[1], -(-MIN_RASTER_WIDTH // max(1, active.shape[1])))
    image = np.repeat(np.repeat(image, RASTER_CELL[0], axis=0), columns, axis=1)
    image[RASTER_CELL[0] - 1::RASTER_CELL[0]] = BAND_RGB  # adjacent active RIMs stay apart
    return np.concatenate([image, legend_band(active.shape[0], image.shape[1])])


@lru_cache(maxsize=8)
def legend_band(k: int, width: int) -> np.ndarray:
    """The raster's legend (``[lines * LEGEND_LINE + 4, width, 3]``, read-only): what dark, light and red
    mean, and what rows and columns are, wrapped at words to ``width``; drawn once per raster size."""
    band = text_band(f"dark = active RIM, light = inactive, red = episode start. Rows: RIMs 0..{k - 1} from the "
                     f"top; columns: the rollout's steps of env 0, left to right.", width, LEGEND_LINE, BAND_RGB,
                     TEXT_RGB)
    band.flags.writeable = False
    return band


class ActivationRecorder:
    """Collects the RIMs masks of one rollout and writes the ``rims/*`` statistics."""

    def __init__(self) -> None:
        self.masks: list[torch.Tensor] = []
        self.starts: list[torch.Tensor] = []

    def reset(self) -> None:
        """Forget the masks of the previous rollout."""
        self.masks.clear()
        self.starts.clear()

    def add(self, mask: torch.Tensor, episode_starts: torch.Tensor) -> None:
        """Store one step: mask ``[B, K]`` (bool), episode_starts ``[B]``."""
        self.masks.append(mask.detach().cpu().bool())
        self.starts.append(episode_starts.detach().cpu().bool().reshape(-1))

    def statistics(self) -> dict[str, float]:
        """``active_frac_<i>`` per RIM and ``switch_rate`` over the stored steps ({} if none)."""
        if not self.masks:
            return {}
        mask = torch.stack(self.masks)  # [T, B, K]
        starts = torch.stack(self.starts)  # [T, B]
        stats = {f"active_frac_{i}": float(v) for i, v in enumerate(mask.float().mean(dim=(0, 1)))}
        if mask.shape[0] > 1:
            changed = (mask[1:] != mask[:-1]).any(dim=-1)  # [T-1, B]
            same_episode = ~starts[1:]
            stats["switch_rate"] = float(changed[same_episode].float().mean()) if same_episode.any() else 0.0
        return stats

    def raster(self, env_index: int = 0) -> np.ndarray | None:
        """The activation raster image of one env over the stored steps (None if nothing stored)."""
        if not self.masks:
            return None
        mask = torch.stack(self.masks)[:, env_index].numpy()
        starts = torch.stack(self.starts)[:, env_index].numpy()
        return activation_raster(mask, starts)

    def record(self, logger: Logger, with_raster: bool) -> None:
        """Write the statistics (and, if ``with_raster``, the raster image) to an SB3 logger."""
        for key, value in self.statistics().items():
            logger.record(f"{GROUP}/{key}", value)
        image = self.raster() if with_raster else None
        if image is not None:
            logger.record(
                f"{GROUP}/activation_raster", Image(image, "HWC"), exclude=("stdout", "log", "json", "csv")
            )
