"""Recurrent actor-critic policies: observation -> extractor -> one shared core -> actor and critic heads.

Shapes: a rollout step sees ``obs [B, ...]``, ``episode_starts [B]``; an update sees whole sequences,
``obs [T*B, ...]`` (time-major, flattened) with ``episode_starts [T, B]``. States are tuples of
``[B, ...]`` tensors (see ``agents.cores``). Dict observations (MultiInputPolicy) are dicts of such
tensors, ``{"image": [N, ...], "mission": [N, L]}``.
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    make_proba_distribution,
)
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from agents.cores import CoreState, check_core_name, make_core
from agents.extractors import CONDITIONINGS, INSTRUCTION_ENCODERS, choose_extractor, default_normalize_images

Observation = torch.Tensor | dict[str, torch.Tensor]


def batch_size_of(observations: Observation | np.ndarray | dict) -> int:
    """Leading dimension of a batch of observations (array/tensor, or dict of them)."""
    if isinstance(observations, dict):
        observations = next(iter(observations.values()))
    return observations.shape[0]


class RecurrentFeaturesExtractor(BaseFeaturesExtractor):
    """Observation features followed by a recurrent core; usable inside your own SB3-style policies.

    ``forward(observations [T*B, ...], state, episode_starts [T, B]) -> (features [T*B, O], state)``
    with ``O = features_dim = core.output_size``. Observations are expected preprocessed as SB3 does
    (``preprocess_obs``). ``last_core_info`` holds the core info of the last call (RIMs) or None.

    :param core: "rims" | "lstm" | "gru" | "none"
    :param core_kwargs: RIMsConfig fields (rims) or ``hidden_size`` (lstm/gru)
    :param cnn: use a CNN (NatureCNN for large images, a small grid CNN for 7x7-like grids)
    :param features_dim: width of the CNN's linear layer (default 512 NatureCNN, 128 grid CNN)
    :param net_arch: hidden sizes of the MLP for vector observations
    :param input_rows: (rims + cnn) feed the CNN's feature-map positions to RIMs as input rows
    :param instruction_kwargs: dict observations only: ``InstructionExtractor`` options (encoder,
        conditioning, instruction_dim, word_dim, instruction_row)
    :param one_hot: symbolic MiniGrid grids enter the grid CNN as one-hot planes of their codes
    """

    def __init__(
        self,
        observation_space: gym.Space,
        core: str = "rims",
        core_kwargs: dict[str, Any] | None = None,
        cnn: bool = False,
        features_dim: int | None = None,
        net_arch: Sequence[int] = (64, 64),
        input_rows: bool = False,
        instruction_kwargs: dict[str, Any] | None = None,
        one_hot: bool = False,
    ) -> None:
        super().__init__(observation_space, features_dim=1)
        check_core_name(core)
        if input_rows and core != "rims":
            raise ValueError(f"input_rows=True needs core 'rims', got core {core!r}")
        self.base = choose_extractor(observation_space, cnn, features_dim, tuple(net_arch), rows=input_rows,
                                     instruction_kwargs=instruction_kwargs, one_hot=one_hot)
        self.core = make_core(
            core, self.base.output_dim, core_kwargs, num_input_rows=self.base.num_rows if input_rows else None
        )
        self._features_dim = self.core.output_size
        self.last_core_info: Any = None

    def initial_state(self, batch_size: int) -> CoreState:
        """Core state of fresh episodes, a tuple of ``[batch_size, ...]`` tensors."""
        return self.core.initial_state(batch_size)

    def forward(
        self, observations: Observation, state: CoreState, episode_starts: torch.Tensor, need_state: bool = True
    ) -> tuple[torch.Tensor, CoreState]:
        """``need_state=False``: the final state may be omitted (``()``), which is faster for LSTMs."""
        T, B = episode_starts.shape
        x = self.base(observations)
        x = x.view(T, B, *x.shape[1:])
        out, state, info = self.core(x, state, episode_starts, need_state=need_state)
        self.last_core_info = info
        return out.reshape(T * B, -1), state


class RIMsFeaturesExtractor(RecurrentFeaturesExtractor):
    """``RecurrentFeaturesExtractor`` with the RIMs core (``core_kwargs`` = RIMsConfig fields)."""

    def __init__(self, observation_space: gym.Space, core_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(observation_space, core="rims", core_kwargs=core_kwargs, **kwargs)


class RecurrentActorCriticPolicy(BasePolicy):
    """Actor-critic with one core shared by a linear actor head and a linear critic head.

    The features extractor (``RecurrentFeaturesExtractor``) holds the CNN/MLP and the core.
    No module behaves differently in training: the policy always stays in eval mode, so dropout is
    off in rollouts and updates and the PPO ratio is exact.

    :param core, core_kwargs, features_dim, net_arch, input_rows: see ``RecurrentFeaturesExtractor``
    :param cnn: CNN extractor (CnnPolicy) or MLP (MlpPolicy); ignored for dict observations
    :param instruction_encoder: dict observations: "gru" (word embedding + GRU, BabyAI baseline) | "bow"
    :param conditioning: dict observations: "film" (BabyAI baseline) | "concat"
    :param instruction_dim, word_dim: sizes of the instruction encoding and of the word embeddings
    :param instruction_row: (rims + input_rows, dict observations) the instruction is one more RIMs
        input row besides the FiLM-conditioned image rows (with conditioning "concat" it always is)
    :param one_hot: symbolic grids (MiniGrid 7x7x3 codes) enter the grid CNN as one-hot planes, as
        BabyAI embeds them; default None: yes for dict observations (MultiInputPolicy), no otherwise
    :param ortho_init: orthogonal init of extractor (gain sqrt 2) and heads (0.01 actor, 1 critic)
    :param normalize_images: divide images by 255 (default: yes for real images, no for symbolic grids)
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        lr_schedule: Schedule,
        core: str = "rims",
        core_kwargs: dict[str, Any] | None = None,
        cnn: bool = False,
        features_dim: int | None = None,
        net_arch: Sequence[int] = (64, 64),
        input_rows: bool = False,
        instruction_encoder: str = "gru",
        conditioning: str = "film",
        instruction_dim: int = 128,
        word_dim: int = 32,
        instruction_row: bool = False,
        one_hot: bool | None = None,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        normalize_images: bool | None = None,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        use_sde: bool = False,
    ) -> None:
        if use_sde:
            raise ValueError("use_sde=True is not supported by the recurrent policies; valid: False")
        if optimizer_kwargs is None:
            optimizer_kwargs = {"eps": 1e-5, "foreach": True} if optimizer_class == torch.optim.Adam else {}
        if normalize_images is None:
            normalize_images = default_normalize_images(observation_space)
        self._check_observation_space(observation_space)
        if one_hot is None:
            one_hot = isinstance(observation_space, spaces.Dict)
        instruction_kwargs = dict(encoder=instruction_encoder, conditioning=conditioning,
                                  instruction_dim=instruction_dim, word_dim=word_dim, instruction_row=instruction_row)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class=RecurrentFeaturesExtractor,
            features_extractor_kwargs=dict(
                core=core,
                core_kwargs=core_kwargs,
                cnn=cnn,
                features_dim=features_dim,
                net_arch=tuple(net_arch),
                input_rows=input_rows,
                instruction_kwargs=instruction_kwargs,
                one_hot=one_hot,
            ),
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        self.core_name = core
        self.core_kwargs = core_kwargs
        self.cnn = cnn
        self.features_dim = features_dim
        self.net_arch = tuple(net_arch)
        self.input_rows = input_rows
        self.instruction_kwargs = instruction_kwargs
        self.one_hot = one_hot
        self.ortho_init = ortho_init
        self.log_std_init = log_std_init
        self.features_extractor: RecurrentFeaturesExtractor = self.make_features_extractor()  # type: ignore[assignment]
        latent_dim = self.features_extractor.features_dim
        self.action_dist = make_proba_distribution(action_space)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            self.action_net, self.log_std = self.action_dist.proba_distribution_net(latent_dim, log_std_init)
        else:
            self.action_net = self.action_dist.proba_distribution_net(latent_dim=latent_dim)
        self.value_net = nn.Linear(latent_dim, 1)
        if ortho_init:
            self.features_extractor.base.apply(lambda m: self.init_weights(m, gain=np.sqrt(2)))
            self.action_net.apply(lambda m: self.init_weights(m, gain=0.01))
            self.value_net.apply(lambda m: self.init_weights(m, gain=1.0))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self.set_training_mode(False)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            core=self.core_name,
            core_kwargs=self.core_kwargs,
            cnn=self.cnn,
            features_dim=self.features_dim,
            net_arch=self.net_arch,
            input_rows=self.input_rows,
            instruction_encoder=self.instruction_kwargs["encoder"],
            conditioning=self.instruction_kwargs["conditioning"],
            instruction_dim=self.instruction_kwargs["instruction_dim"],
            word_dim=self.instruction_kwargs["word_dim"],
            instruction_row=self.instruction_kwargs["instruction_row"],
            one_hot=self.one_hot,
            ortho_init=self.ortho_init,
            log_std_init=self.log_std_init,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            lr_schedule=self._dummy_schedule,
        )
        return data

    def _check_observation_space(self, observation_space: gym.Space) -> None:
        """One-line ValueError for dict observations: only MultiInputPolicy reads them."""
        if isinstance(observation_space, spaces.Dict):
            raise ValueError(f"{type(self).__name__} cannot read dict observations ({', '.join(observation_space.spaces)}); "
                             "valid: MultiInputPolicy (or instructions: false for the image alone)")

    def set_training_mode(self, mode: bool) -> None:
        """Keep every module in eval mode (dropout off) whatever ``mode`` says; see class docstring."""
        self.train(False)
        self.training = False

    @property
    def last_core_info(self) -> Any:
        """Info of the core's last forward (RIMs info with ``mask`` etc.), or None for other cores."""
        return self.features_extractor.last_core_info

    def initial_state(self, batch_size: int) -> CoreState:
        """Core state of fresh episodes, a tuple of ``[batch_size, ...]`` tensors."""
        return self.features_extractor.initial_state(batch_size)

    def _latent(self, obs: Observation, state: CoreState, episode_starts: torch.Tensor, need_state: bool = True):
        """obs [T*B, ...], episode_starts [T, B] -> (latent [T*B, O], state)."""
        obs = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        return self.features_extractor(obs, state, episode_starts.float(), need_state=need_state)

    def _distribution(self, latent: torch.Tensor) -> Distribution:
        logits = self.action_net(latent)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            return self.action_dist.proba_distribution(logits, self.log_std)
        if isinstance(self.action_dist, (CategoricalDistribution, MultiCategoricalDistribution, BernoulliDistribution)):
            return self.action_dist.proba_distribution(action_logits=logits)
        raise ValueError(f"unsupported action distribution {type(self.action_dist).__name__}")

    def forward(  # type: ignore[override]
        self, obs: Observation, state: CoreState, episode_starts: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, CoreState]:
        """One step for B envs: obs [B, ...], episode_starts [B] -> actions, values [B, 1], log_prob [B], state."""
        latent, state = self._latent(obs, state, episode_starts.view(1, -1))
        distribution = self._distribution(latent)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), self.value_net(latent), log_prob, state

    def get_distribution(  # type: ignore[override]
        self, obs: Observation, state: CoreState, episode_starts: torch.Tensor
    ) -> tuple[Distribution, CoreState]:
        """Action distribution for obs [T*B, ...] with episode_starts [T, B] (or [B] for one step)."""
        if episode_starts.dim() == 1:
            episode_starts = episode_starts.view(1, -1)
        latent, state = self._latent(obs, state, episode_starts)
        return self._distribution(latent), state

    def predict_values(self, obs: Observation, state: CoreState, episode_starts: torch.Tensor) -> torch.Tensor:
        """Values [B, 1] for one step of B envs (episode_starts [B])."""
        latent, _ = self._latent(obs, state, episode_starts.view(1, -1))
        return self.value_net(latent)

    def evaluate_actions(  # type: ignore[override]
        self, obs: Observation, actions: torch.Tensor, state: CoreState, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re-run whole sequences: obs [T*B, ...], actions [T*B, ...], episode_starts [T, B]
        -> values [T*B, 1], log_prob [T*B], entropy [T*B]."""
        latent, _ = self._latent(obs, state, episode_starts, need_state=False)
        distribution = self._distribution(latent)
        return self.value_net(latent), distribution.log_prob(actions), distribution.entropy()

    def _predict(self, observation: Observation, deterministic: bool = False) -> torch.Tensor:
        """Stateless one-step prediction from fresh episode states (SB3 hook; prefer ``predict``)."""
        n = batch_size_of(observation)
        starts = torch.ones(n, device=self.device)
        distribution, _ = self.get_distribution(observation, self.initial_state(n), starts)
        return distribution.get_actions(deterministic=deterministic)

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Actions and next state for one step of observations ``[B, ...]`` (or a single one).

        ``state=None`` starts fresh episodes; ``episode_start [B]`` (1 = new episode) resets the state.
        Returns ``(actions, state)`` with ``state`` a tuple of numpy arrays ``[B, ...]``.
        """
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        n = batch_size_of(obs_tensor)
        if state is None:
            core_state = self.initial_state(n)
            if episode_start is None:
                episode_start = np.ones(n, dtype=np.float32)
        else:
            core_state = tuple(torch.as_tensor(np.asarray(s), dtype=torch.float32, device=self.device) for s in state)
        if episode_start is None:
            episode_start = np.zeros(n, dtype=np.float32)
        starts = torch.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(n), device=self.device)
        with torch.no_grad():
            distribution, core_state = self.get_distribution(obs_tensor, core_state, starts)
            actions = distribution.get_actions(deterministic=deterministic)
        actions = actions.cpu().numpy().reshape((-1, *self.action_space.shape))
        if isinstance(self.action_space, spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, tuple(s.cpu().numpy() for s in core_state)


class MlpPolicy(RecurrentActorCriticPolicy):
    """Recurrent actor-critic for vector observations (MLP extractor)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cnn", False)
        super().__init__(*args, **kwargs)


class CnnPolicy(RecurrentActorCriticPolicy):
    """Recurrent actor-critic for images: NatureCNN (Atari) or a small grid CNN (MiniGrid 7x7)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cnn", True)
        super().__init__(*args, **kwargs)


class MultiInputPolicy(RecurrentActorCriticPolicy):
    """Recurrent actor-critic for dict observations: {"image", "mission"} (MiniGrid/BabyAI with instructions)
    through the image CNN conditioned on the instruction encoding (``InstructionExtractor``), any other dict
    through ``DictExtractor`` (each key encoded, concatenated); then the core and heads."""

    def _check_observation_space(self, observation_space: gym.Space) -> None:
        if not isinstance(observation_space, spaces.Dict):
            raise ValueError(f"MultiInputPolicy needs dict observations, got {observation_space}")
