"""Features extractors that turn a batch of observations into core inputs.

Each extractor maps observations ``[N, ...]`` to either a flat feature vector ``[N, features_dim]``
or, with ``rows=True`` (CNNs only), to input rows ``[N, R, row_dim]``: one row per position of the
last feature map (``R = h * w``, ``row_dim`` = channels; the RIMs core adds a position embedding).
Image observations usually arrive channel-first ``[C, H, W]`` (SB3 wraps channel-last image envs in
``VecTransposeImage``); channel-last spaces SB3 leaves alone (e.g. a grid with ``high=10``) are
permuted inside the CNN. ``choose_extractor`` picks NatureCNN for Atari-sized images, a small CNN for
MiniGrid-sized grids (7x7), an MLP for vectors, ``InstructionExtractor`` for dict observations
``{"image", "mission"}`` (the image CNN conditioned on an encoding of the mission's token ids), and
``DictExtractor`` for any other dict (each key encoded, then concatenated).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from torch import nn

SMALL_GRID_MAX_SIDE = 16  # images with both sides <= this use the small grid CNN
SYMBOLIC_CODES = (11, 6, 3)  # MiniGrid's object types, colours, door states: the values of the 3 channels


def one_hot_codes(grid: torch.Tensor) -> torch.Tensor:
    """Symbolic grid ``[N, 3, H, W]`` of (object, colour, state) codes -> one-hot ``[N, 20, H, W]`` float
    (codes above a channel's range count as its last value)."""
    planes = [F.one_hot(grid[:, c].long().clamp(0, n - 1), n) for c, n in enumerate(SYMBOLIC_CODES)]
    return torch.cat(planes, dim=-1).permute(0, 3, 1, 2).float()


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

    one_hot: bool = False

    def _finish(self, observation_space: spaces.Box, features_dim: int, rows: bool) -> None:
        with torch.no_grad():
            fmap = self.feature_map(torch.zeros(1, *observation_space.shape))  # in the space's own layout
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

    def feature_map(self, observations: torch.Tensor) -> torch.Tensor:
        """The last conv layer's maps ``[N, C, h, w]`` of images given channel-first or channel-last."""
        if self.channels_last:
            observations = observations.permute(0, 3, 1, 2)
        if self.one_hot:
            return self.cnn(one_hot_codes(observations))
        return self.cnn(observations.float())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        fmap = self.feature_map(observations)
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
    """Small CNN for symbolic grids (MiniGrid ``[3, 7, 7]`` -> 64 maps of 4x4), 2x2 kernels.

    ``one_hot=True``: each cell's (object, colour, state) codes enter as one-hot planes
    (``SYMBOLIC_CODES`` = 11 + 6 + 3 = 20 channels) instead of 3 raw numbers, as BabyAI's baselines
    embed them; a colour or type is then one channel, which a FiLM gain can pick out.
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128, rows: bool = False,
                 one_hot: bool = False) -> None:
        super().__init__()
        self.channels_last = is_channels_last(observation_space)
        self.one_hot = one_hot
        in_channels = sum(SYMBOLIC_CODES) if one_hot else channel_first_shape(observation_space)[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=2),
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


INSTRUCTION_ENCODERS = ("gru", "bow")
CONDITIONINGS = ("film", "concat")


class InstructionEncoder(nn.Module):
    """Mission token ids ``[N, L]`` (0 = padding) -> ``[N, instruction_dim]``.

    ``gru`` (the BabyAI baseline): word embeddings read by a GRU, whose output at the last word is the
    encoding. ``bow``: the mean of the word embeddings, then Linear + ReLU (order-free, cheaper).
    Only the columns up to the longest mission of the batch are read, and each distinct mission of the
    batch is encoded once (a rollout batch repeats a few missions many times).
    """

    def __init__(self, vocabulary_size: int, kind: str = "gru", word_dim: int = 32, instruction_dim: int = 128) -> None:
        super().__init__()
        if kind not in INSTRUCTION_ENCODERS:
            raise ValueError(f"unknown instruction_encoder {kind!r}; valid: {', '.join(INSTRUCTION_ENCODERS)}")
        self.kind, self.output_dim = kind, instruction_dim
        self.embedding = nn.Embedding(vocabulary_size, word_dim, padding_idx=0)
        if kind == "gru":
            self.gru = nn.GRU(word_dim, instruction_dim, batch_first=True)
        else:
            self.linear = nn.Sequential(nn.Linear(word_dim, instruction_dim), nn.ReLU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        lengths = (tokens != 0).sum(dim=1)
        tokens = tokens[:, : max(int(lengths.max()), 1)] if len(tokens) else tokens
        unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
        unique_lengths = (unique != 0).sum(dim=1)
        words = self.embedding(unique)  # [U, L, word_dim]
        if self.kind == "gru":
            out, _ = self.gru(words)
            last = (unique_lengths - 1).clamp(min=0)
            encoded = out[torch.arange(len(unique), device=out.device), last]
            encoded = encoded * (unique_lengths > 0).unsqueeze(1)
        else:
            encoded = self.linear(words.sum(dim=1) / unique_lengths.clamp(min=1).unsqueeze(1))
        return encoded[inverse]


class FiLM(nn.Module):
    """FiLM block of the BabyAI baseline (Perez et al. 2018): ``relu(conv(x) * (1 + gamma(i)) + beta(i)) + x``,
    gamma and beta per channel from the instruction encoding ``i``."""

    def __init__(self, channels: int, instruction_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.gamma = nn.Linear(instruction_dim, channels)
        self.beta = nn.Linear(instruction_dim, channels)

    def forward(self, fmap: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma(instruction)[:, :, None, None]
        beta = self.beta(instruction)[:, :, None, None]
        return F.relu(self.conv(fmap) * (1 + gamma) + beta) + fmap


class InstructionExtractor(RowsExtractor):
    """Dict observations ``{"image": [C, H, W] or [H, W, C], "mission": [L] token ids}`` -> features or rows.

    The image goes through the grid CNN (NatureCNN for large images), the mission through an
    ``InstructionEncoder`` (``encoder``: gru | bow), and the two meet by ``conditioning``:
    - ``film``: a FiLM block modulates the CNN's feature map with the instruction; then
      Linear(features_dim) + ReLU (rows: one row per map position, each already conditioned);
    - ``concat``: Linear(features_dim) + ReLU of the flat map concatenated with the instruction
      (rows: the image rows plus the instruction as one more row).
    ``instruction_row=True`` (rows only) adds the instruction row to FiLM-conditioned rows as well, so
    RIMs' input attention can choose between reading and seeing.
    """

    def __init__(self, observation_space: spaces.Dict, features_dim: int | None = None, rows: bool = False,
                 encoder: str = "gru", conditioning: str = "film", instruction_dim: int = 128, word_dim: int = 32,
                 instruction_row: bool = False, one_hot: bool = False) -> None:
        super().__init__()
        check_instruction_space(observation_space)
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; valid: {', '.join(CONDITIONINGS)}")
        if instruction_row and not rows:
            raise ValueError("instruction_row=True needs input_rows=True (core 'rims'): it is one more RIMs input row")
        image_space, mission_space = observation_space["image"], observation_space["mission"]
        self.image = choose_extractor(image_space, cnn=True, features_dim=features_dim, rows=True, one_hot=one_hot)
        self.instruction = InstructionEncoder(int(mission_space.high.max()) + 1, encoder, word_dim, instruction_dim)
        channels = self.image.row_dim
        self.conditioning, self.rows = conditioning, rows
        self.film = FiLM(channels, instruction_dim) if conditioning == "film" else None
        self.instruction_row = rows and (instruction_row or conditioning == "concat")
        flat = self.image.features_dim  # C * h * w
        if rows:
            self.num_rows = self.image.num_rows + int(self.instruction_row)
            self.row_dim = channels
            self.features_dim = self.num_rows * channels
            if self.instruction_row:
                self.row_projection = nn.Sequential(nn.Linear(instruction_dim, channels), nn.ReLU())
        else:
            self.features_dim = self.row_dim = features_dim or (128 if is_small_grid(image_space) else 512)
            extra = instruction_dim if conditioning == "concat" else 0
            self.linear = nn.Sequential(nn.Linear(flat + extra, self.features_dim), nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        fmap = self.image.feature_map(observations["image"])
        instruction = self.instruction(observations["mission"])
        if self.film is not None:
            fmap = self.film(fmap, instruction)
        if self.rows:
            rows = fmap.flatten(2).transpose(1, 2)  # [N, h*w, C]
            if self.instruction_row:
                rows = torch.cat([rows, self.row_projection(instruction).unsqueeze(1)], dim=1)
            return rows
        flat = fmap.flatten(1)
        if self.conditioning == "concat":
            flat = torch.cat([flat, instruction], dim=1)
        return self.linear(flat)


def is_instruction_space(observation_space: gym.Space) -> bool:
    """True for ``Dict(image=3-d Box, mission=1-d integer Box)``: MiniGrid/BabyAI with the mission."""
    return (isinstance(observation_space, spaces.Dict) and set(observation_space.spaces) == {"image", "mission"}
            and len(observation_space["image"].shape) == 3 and len(observation_space["mission"].shape) == 1
            and np.issubdtype(observation_space["mission"].dtype, np.integer))


class DictExtractor(RowsExtractor):
    """Any other dict observation (a user's env): each image key through the CNN ``choose_extractor`` picks
    for it, every other key flattened (Discrete one-hot, as SB3 preprocesses it), all concatenated in key
    order, as SB3's ``CombinedExtractor`` does; features_dim = the total."""

    def __init__(self, observation_space: spaces.Dict, features_dim: int | None = None) -> None:
        super().__init__()
        self.keys = sorted(observation_space.spaces)
        parts, size = {}, 0
        for key in self.keys:
            space = observation_space[key]
            if isinstance(space, spaces.Box) and len(space.shape) == 3:
                parts[key] = choose_extractor(space, cnn=True, features_dim=features_dim)
                size += parts[key].features_dim
            else:
                parts[key] = nn.Flatten()
                size += get_flattened_obs_dim(space)
        self.parts = nn.ModuleDict(parts)
        self.features_dim = self.row_dim = size

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.parts[key](observations[key].float()) for key in self.keys], dim=1)


def check_instruction_space(observation_space: gym.Space) -> None:
    """One-line ValueError unless the space is ``Dict(image=3-d Box, mission=1-d integer Box)``."""
    if not is_instruction_space(observation_space):
        raise ValueError(f"MultiInputPolicy needs dict observations {{'image': [H, W, C], 'mission': [L] token ids}} "
                         f"(MiniGrid/BabyAI with instructions), got {observation_space}")


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
    instruction_kwargs: dict | None = None,
    one_hot: bool = False,
) -> RowsExtractor:
    """Pick and build the extractor for ``observation_space`` (see module docstring).

    ``cnn=False`` (MlpPolicy) always gives the MLP; ``rows=True`` needs a CNN. Dict observations
    (MultiInputPolicy) give ``InstructionExtractor(**instruction_kwargs)`` for an image with its mission, else
    a ``DictExtractor`` (no rows). ``one_hot``: symbolic grids enter the grid CNN as one-hot planes (ignored
    for other images).
    """
    if isinstance(observation_space, spaces.Dict):
        if is_instruction_space(observation_space):
            return InstructionExtractor(observation_space, features_dim, rows, one_hot=one_hot,
                                        **(instruction_kwargs or {}))
        if rows:
            raise ValueError("input_rows=True needs an image observation (rows are CNN feature-map positions), "
                             f"got dict keys {sorted(observation_space.spaces)}")
        return DictExtractor(observation_space, features_dim)
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
        return GridCNNExtractor(observation_space, features_dim or 128, rows=rows,
                                one_hot=one_hot and not default_normalize_images(observation_space))
    return NatureCNNExtractor(observation_space, features_dim or 512, rows=rows)


def default_normalize_images(observation_space: gym.Space) -> bool:
    """Divide by 255 for real images (Atari, MiniGrid RGB), not for symbolic grids whose values are small ids
    (a dict observation: as its image)."""
    if isinstance(observation_space, spaces.Dict) and "image" in observation_space.spaces:
        observation_space = observation_space["image"]
    return is_image_space(observation_space) and not is_small_grid(observation_space)


__all__ = [
    "FiLM",
    "GridCNNExtractor",
    "InstructionEncoder",
    "InstructionExtractor",
    "MlpExtractor",
    "NatureCNNExtractor",
    "RowsExtractor",
    "channel_first_shape",
    "choose_extractor",
    "default_normalize_images",
    "is_small_grid",
]
