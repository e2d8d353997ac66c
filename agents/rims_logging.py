"""RIMs activation statistics for SB3's logger: per-RIM activation frequency, switch rate, raster image.

``ActivationRecorder.add(mask [B, K], episode_starts [B])`` is called once per rollout step;
``record(logger, with_raster)`` writes at the end of the rollout:
- ``rims/active_frac_<i>``: fraction of (step, env) pairs in which RIM i was active;
- ``rims/switch_rate``: fraction of steps (inside an episode) whose active set differs from the
  previous step's;
- ``rims/activation_raster`` (SB3 ``Image``, TensorBoard only): RIM (rows) x time (columns) for env 0;
  white = active, black = inactive, a red column marks an episode start.
"""
from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.logger import Image, Logger

RASTER_CELL = (8, 2)  # pixels per (RIM row, time step)
# Colours of the raster, shared with the `record` video strip.
ACTIVE_RGB = (255, 255, 255)
INACTIVE_RGB = (0, 0, 0)
START_ACTIVE_RGB = (255, 120, 120)
START_INACTIVE_RGB = (120, 0, 0)


def activation_raster(mask: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """RGB image ``[K*8, T*2, 3]`` uint8 of a mask ``[T, K]`` (bool); episode-start columns are red
    (light red = active, dark red = inactive)."""
    active = mask.T.astype(bool)  # [K, T]
    image = np.where(active[:, :, None], ACTIVE_RGB, INACTIVE_RGB).astype(np.uint8)
    starts = episode_starts.astype(bool)
    image[:, starts] = np.where(active[:, starts, None], START_ACTIVE_RGB, START_INACTIVE_RGB).astype(np.uint8)
    return np.repeat(np.repeat(image, RASTER_CELL[0], axis=0), RASTER_CELL[1], axis=1)


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
            logger.record(f"rims/{key}", value)
        image = self.raster() if with_raster else None
        if image is not None:
            logger.record(
                "rims/activation_raster", Image(image, "HWC"), exclude=("stdout", "log", "json", "csv")
            )
