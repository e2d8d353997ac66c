"""Features extractors that turn a batch of observations into core inputs.

Each extractor maps observations ``[N, ...]`` to either a flat feature vector ``[N, features_dim]``
or, with ``rows=True`` (CNNs only), to input rows ``[N, R, row_dim]``: one row per position of the
last feature map (``R = h * w``, ``row_dim`` = channels; the RIMs core adds a position embedding).
Image observations usually arrive channel-first ``[C, H, W]`` (SB3 wraps channel-last image envs in
``VecTransposeImage``); channel-last spaces SB3 leaves alone (e.g. a grid with ``high=10``) are
permuted inside the CNN. ``choose_extractor`` picks NatureCNN for Atari-sized images, a small CNN for
MiniGrid-sized grids (7x7) and an MLP for vectors.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from torch import nn

SMALL_GRID_MAX_SIDE = 16  # images with both sides <= this use the small grid CNN


class RowsExtractor(nn.Module):
    """Base of the extractors: ``forward(obs [N, ...]) -> [N, features_dim]`` or ``[N, R, row_dim]``.

    Attributes: ``features_dim`` (flat output size), ``rows`` (bool), ``num_rows`` and ``row_dim``
    (the row layout when ``rows`` is True; ``1`` and ``features_dim`` otherwise).
    """

    features_dim: int
    rows: bool = False
    num_rows: int = 1
    row_dim: int

    @property
    def output_dim(self) -> int:
        """Size of the last dimension of the output (row_dim with rows, else features_dim)."""
        return self.row_dim if self.rows else self.features_dim


class _ConvRows(RowsExtractor):
    """Shared logic of the CNN extractors: conv stack -> (flat linear features | rows)."""

    channels_last: bool = False

    def _finish(self, observation_space: spaces.Box, features_dim: int, rows: bool) -> None:
        with torch.no_grad():
            fmap = self.cnn(torch.zeros(1, *channel_first_shape(observation_space)))
        channels, height, width = fmap.shape[1:]
        self.rows = rows
        if rows:
            self.num_rows = height * width
            self.row_dim = channels
            self.features_dim = channels * height * width
        else:
            self.features_dim = features_dim
            self.row_dim = features_dim
            self.linear = nn.Sequential(nn.Linear(channels * height * width, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            observations = observations.permute(0, 3, 1, 2)
        fmap = self.cnn(observations.float())
        if self.rows:
            return fmap.flatten(2).transpose(1, 2)  # [N, h*w, C]
        return self.linear(fmap.flatten(1))


class NatureCNNExtractor(_ConvRows):
    """The DQN Nature CNN (Atari ``[4, 84, 84]`` -> 64 maps of 7x7) then Linear(features_dim)+ReLU."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 512, rows: bool = False) -> None:
        super().__init__()
        self.channels_last = is_channels_last(observation_space)
        self.cnn = nn.Sequential(
            nn.Conv2d(channel_first_shape(observation_space)[0], 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        self._finish(observation_space, features_dim, rows)


class GridCNNExtractor(_ConvRows):
    """Small CNN for symbolic grids (MiniGrid ``[3, 7, 7]`` -> 64 maps of 4x4), 2x2 kernels."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128, rows: bool = False) -> None:
        super().__init__()
        self.channels_last = is_channels_last(observation_space)
        self.cnn = nn.Sequential(
            nn.Conv2d(channel_first_shape(observation_space)[0], 16, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=2),
            nn.ReLU(),
        )
        self._finish(observation_space, features_dim, rows)


class MlpExtractor(RowsExtractor):
    """Flatten then an MLP with ``net_arch`` hidden sizes (tanh); features_dim = last hidden size."""

    def __init__(self, observation_space: gym.Space, net_arch: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = get_flattened_obs_dim(observation_space)
        for hidden in net_arch:
            layers += [nn.Linear(size, hidden), nn.Tanh()]
            size = hidden
        self.net = nn.Sequential(*layers)
        self.features_dim = size
        self.row_dim = size

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations.float())


def is_channels_last(observation_space: gym.Space) -> bool:
    """True for a 3-d Box whose smallest side is the last one (``[H, W, C]``), as SB3 decides it."""
    shape = observation_space.shape
    return len(shape) == 3 and int(np.argmin(shape)) == 2 and shape[2] < shape[0]


def channel_first_shape(observation_space: gym.Space) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image space given channel-first or channel-last."""
    shape = tuple(observation_space.shape)
    return (shape[2], shape[0], shape[1]) if is_channels_last(observation_space) else shape


def is_small_grid(observation_space: gym.Space) -> bool:
    """True for image-like grids of side <= 16 (MiniGrid symbolic views), False otherwise."""
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3):
        return False
    return max(channel_first_shape(observation_space)[1:]) <= SMALL_GRID_MAX_SIDE


def choose_extractor(
    observation_space: gym.Space,
    cnn: bool,
    features_dim: int | None = None,
    net_arch: tuple[int, ...] = (64, 64),
    rows: bool = False,
) -> RowsExtractor:
    """Pick and build the extractor for ``observation_space`` (see module docstring).

    ``cnn=False`` (MlpPolicy) always gives the MLP; ``rows=True`` needs a CNN.
    """
    if isinstance(observation_space, spaces.Dict):
        raise ValueError("dict observation spaces are not supported; valid: Box or Discrete observations")
    image_like = isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3
    if cnn and not image_like:
        raise ValueError(
            f"CnnPolicy needs image observations [C, H, W], got shape {observation_space.shape}; "
            "use MlpPolicy for vectors"
        )
    if rows and not cnn:
        raise ValueError("input_rows=True needs CnnPolicy (rows are CNN feature-map positions)")
    if not cnn:
        return MlpExtractor(observation_space, tuple(net_arch))
    if is_small_grid(observation_space):
        return GridCNNExtractor(observation_space, features_dim or 128, rows=rows)
    return NatureCNNExtractor(observation_space, features_dim or 512, rows=rows)


def default_normalize_images(observation_space: gym.Space) -> bool:
    """Divide by 255 for real images (Atari), not for symbolic grids whose values are small ids."""
    return is_image_space(observation_space) and not is_small_grid(observation_space)


__all__ = [
    "GridCNNExtractor",
    "MlpExtractor",
    "NatureCNNExtractor",
    "RowsExtractor",
    "channel_first_shape",
    "choose_extractor",
    "default_normalize_images",
    "is_small_grid",
]
