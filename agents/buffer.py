"""Rollout storage for recurrent PPO: whole env sequences, with the core state at every step.

The SB3 ``RolloutBuffer`` arrays are already time-major ``[n_steps, n_envs, ...]``; this subclass
adds the core state before each step and serves minibatches made of whole sequences: each env's
rollout, or equal chunks of it that start from the stored state (when more minibatches than envs are
asked for, or when the BPTT length is capped below ``n_steps``). Minibatch tensors stay time-major:
``observations [L*b, ...]`` flattened from ``[L, b, ...]`` (a dict of such tensors for dict
observations: ``SequenceDictRolloutBuffer``), ``episode_starts [L, b]``, ``initial_state`` a tuple of
``[b, ...]`` tensors.
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from agents.cores import CoreState
from agents.sequences import chunks_per_env


class SequenceBatch(NamedTuple):
    """One minibatch of b sequences of length L (time-major, flattened to L*b where noted)."""

    observations: torch.Tensor | dict[str, torch.Tensor]  # [L*b, *obs_shape] (per key for dict observations)
    actions: torch.Tensor  # [L*b, action_dim]
    old_values: torch.Tensor  # [L*b]
    old_log_prob: torch.Tensor  # [L*b]
    advantages: torch.Tensor  # [L*b]
    returns: torch.Tensor  # [L*b]
    episode_starts: torch.Tensor  # [L, b]
    initial_state: CoreState  # tuple of [b, ...]


def map_observations(fn: Callable, observations):
    """``fn`` applied to an observation array, or to each entry of a dict of them."""
    if isinstance(observations, dict):
        return {key: fn(value) for key, value in observations.items()}
    return fn(observations)


class SequenceBuffer:
    """The sequence logic shared by ``SequenceRolloutBuffer`` (array observations) and
    ``SequenceDictRolloutBuffer`` (dict observations): the stored core states and whole-sequence minibatches."""

    def reset(self) -> None:
        super().reset()
        self.core_states: list[torch.Tensor] | None = None  # each [n_steps, n_envs, ...]

    def add(self, *args, core_state: CoreState = (), **kwargs) -> None:  # type: ignore[override]
        """SB3 ``add`` plus the core state used to compute this step (tuple of ``[n_envs, ...]``)."""
        if self.core_states is None:
            self.core_states = [
                torch.zeros((self.buffer_size, *s.shape), dtype=s.dtype, device=s.device) for s in core_state
            ]
        for store, s in zip(self.core_states, core_state):
            store[self.pos] = s.detach()
        super().add(*args, **kwargs)

    def sequence_minibatches(self, n_minibatches: int, max_length: int | None = None) -> Iterator[SequenceBatch]:
        """Yield ``n_minibatches`` minibatches of whole sequences in random order (uses np.random);
        sequences are at most ``max_length`` steps long (None: whole rollouts where possible)."""
        chunks = chunks_per_env(self.buffer_size, self.n_envs, n_minibatches, max_length)
        length = self.buffer_size // chunks
        n_seq = chunks * self.n_envs

        def sequences(array: np.ndarray | torch.Tensor) -> torch.Tensor:
            # [n_steps, E, ...] -> [L, chunks*E, ...]; sequence index = chunk * E + env
            tensor = torch.as_tensor(array, device=self.device)
            rest = tensor.shape[2:]
            tensor = tensor.reshape(chunks, length, self.n_envs, *rest).transpose(0, 1)
            return tensor.reshape(length, n_seq, *rest)

        observations = map_observations(sequences, self.observations)
        actions = sequences(self.actions)
        per_step = [sequences(a) for a in (self.values, self.log_probs, self.advantages, self.returns)]
        episode_starts = sequences(self.episode_starts)
        states = [s[::length].reshape(n_seq, *s.shape[2:]) for s in (self.core_states or [])]

        for idx in np.array_split(np.random.permutation(n_seq), n_minibatches):
            index = torch.as_tensor(idx, device=self.device)

            def take(t: torch.Tensor) -> torch.Tensor:
                picked = t.index_select(1, index)
                return picked.reshape(-1, *picked.shape[2:])

            values, log_probs, advantages, returns = (take(a) for a in per_step)
            yield SequenceBatch(
                observations=map_observations(take, observations),
                actions=take(actions),
                old_values=values,
                old_log_prob=log_probs,
                advantages=advantages,
                returns=returns,
                episode_starts=episode_starts.index_select(1, index),
                initial_state=tuple(s.index_select(0, index) for s in states),
            )


class SequenceRolloutBuffer(SequenceBuffer, RolloutBuffer):
    """``RolloutBuffer`` that also keeps the core state before each step (``add(..., core_state=...)``)."""


class SequenceDictRolloutBuffer(SequenceBuffer, DictRolloutBuffer):
    """``DictRolloutBuffer`` (observations a dict of ``[n_steps, n_envs, ...]`` arrays) with the core states."""


def make_sequence_buffer(observation_space: spaces.Space, *args, **kwargs) -> SequenceBuffer:
    """The sequence rollout buffer for ``observation_space`` (dict or array observations)."""
    cls = SequenceDictRolloutBuffer if isinstance(observation_space, spaces.Dict) else SequenceRolloutBuffer
    return cls(*args, observation_space=observation_space, **kwargs)
