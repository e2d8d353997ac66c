"""``RecurrentPPO``: PPO (clip) over whole env sequences with a pluggable core (rims, lstm, gru, none).

An SB3 ``OnPolicyAlgorithm``: ``learn``, callbacks, progress bar, TensorBoard, ``save``/``load`` (zip
incl. optimizer state) and ``predict(obs, state, episode_start)`` work as in SB3 / sb3-contrib;
loading never unpickles anything (``agents.serialization``).
Rollouts carry the core state from step to step and store it; each update re-runs the core over
whole sequences (BPTT over ``n_steps``, or over chunks of at most ``bptt_length`` steps that start
from the stored rollout state), resetting at episode starts inside a sequence.
"""
from __future__ import annotations

import io
import os
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from agents.buffer import SequenceBatch, SequenceBuffer, make_sequence_buffer
from agents.cores import CoreState, check_core_name
from agents.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, RecurrentActorCriticPolicy
from agents.rims_logging import ActivationRecorder
from agents.sequences import chunks_per_env
from agents.serialization import load_model, save_model

SelfRecurrentPPO = TypeVar("SelfRecurrentPPO", bound="RecurrentPPO")


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_range_vf: float | None
) -> torch.Tensor:
    """Mean squared error of ``values`` against ``returns``; with ``clip_range_vf``, value clipping.

    Value clipping as in Kostrikov's PPO (and OpenAI baselines' PPO2): per sample, the larger of the
    squared errors of the new value and of the new value moved at most ``clip_range_vf`` away from
    the rollout's ``old_values``. A value that moved further than the clip range, the wrong way,
    gets no gradient. (SB3's PPO keeps only the clipped term.) ``None``: no clipping.
    """
    error = (returns - values) ** 2
    if clip_range_vf is None:
        return error.mean()
    clipped = old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    return torch.max(error, (returns - clipped) ** 2).mean()


class RecurrentPPO(OnPolicyAlgorithm):
    """Recurrent PPO with one core shared by actor and critic.

    :param policy: "MlpPolicy" | "CnnPolicy" | "MultiInputPolicy" (dict observations {"image", "mission"})
        or a ``RecurrentActorCriticPolicy`` subclass
    :param env: SB3 VecEnv (or gymnasium env / id, wrapped as SB3 does)
    :param core: "rims" | "lstm" | "gru" | "none"
    :param core_kwargs: RIMsConfig fields (rims; dropouts default to 0) or ``{"hidden_size": H}``
        (lstm/gru, default 256); None for defaults
    :param learning_rate: float or schedule ``f(progress_remaining)``
    :param n_steps: steps per env per rollout (the BPTT length unless ``bptt_length`` caps it)
    :param batch_size: samples per minibatch (overrides n_minibatches; must divide n_steps*n_envs)
    :param n_minibatches: minibatches per epoch; each holds ``n_envs / n_minibatches`` whole env
        sequences (more minibatches than envs split the sequences into equal chunks)
    :param bptt_length: cap on the length of the update's sequences: each env rollout is split into
        equal chunks of at most this many steps (a divisor of n_steps), each starting from the core
        state stored during the rollout. Shorter chunks run more sequences side by side and fewer
        sequential steps, which is faster for step-by-step cores (rims), but gradients do not cross
        chunk boundaries. None (default): whole rollouts.
    :param clip_range_vf: value clipping (float or schedule; None = off): the pessimistic form of
        Kostrikov's PPO and baselines' PPO2 (:func:`clipped_value_loss`), not SB3's clipped-only one
    :param n_epochs, gamma, gae_lambda, clip_range, normalize_advantage, ent_coef, vf_coef,
        max_grad_norm, target_kl: as in SB3 PPO (the value loss is ``vf_coef`` times the mean
        squared error, with no factor 1/2)
    :param raster_interval: log the RIMs activation raster image every this many rollouts
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy, "MultiInputPolicy": MultiInputPolicy}
    policy: RecurrentActorCriticPolicy
    rollout_buffer: SequenceBuffer

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
        env: GymEnv | str,
        core: str = "rims",
        core_kwargs: dict[str, Any] | None = None,
        learning_rate: float | Schedule = 2.5e-4,
        n_steps: int = 128,
        batch_size: int | None = None,
        n_minibatches: int = 4,
        bptt_length: int | None = None,
        n_epochs: int = 4,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.1,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        raster_interval: int = 10,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "cpu",
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(policy, str) and policy not in self.policy_aliases:
            raise ValueError(f"unknown policy {policy!r}; valid policies: {', '.join(self.policy_aliases)}")
        check_core_name(core)
        for name, value in (("clip_range", clip_range), ("clip_range_vf", clip_range_vf)):
            if isinstance(value, (int, float)) and not value > 0:
                off = " or None (no value clipping)" if name == "clip_range_vf" else ""
                raise ValueError(f"{name}={value} is invalid; valid: a number > 0, a schedule{off}")
        if raster_interval < 1:
            raise ValueError(f"raster_interval={raster_interval} is invalid; valid: integers >= 1")
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=-1,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.core = core
        self.core_kwargs = dict(core_kwargs) if core_kwargs else None
        self.batch_size = batch_size
        self.n_minibatches = n_minibatches
        self.bptt_length = bptt_length
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.raster_interval = raster_interval
        self._last_core_state: CoreState | None = None
        if _init_setup_model:
            self._setup_model()

    # ----------------------------------------------------------------------------------- setup
    def _minibatch_count(self) -> int:
        """n_minibatches, or n_steps*n_envs / batch_size when batch_size is given (validated)."""
        total = self.n_steps * self.n_envs
        if self.batch_size is None:
            count = self.n_minibatches
        else:
            if self.batch_size < 1 or total % self.batch_size != 0:
                raise ValueError(
                    f"batch_size={self.batch_size} must divide n_steps*n_envs={total}; "
                    f"valid: divisors of {total}"
                )
            count = total // self.batch_size
        chunks_per_env(self.n_steps, self.n_envs, count, self.bptt_length)  # raises ValueError if impossible
        return count

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._minibatch_count()
        policy_kwargs = dict(self.policy_kwargs)
        for key in ("core", "core_kwargs"):
            if key in policy_kwargs:
                raise ValueError(f"pass {key!r} to RecurrentPPO directly, not in policy_kwargs")
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            core=self.core,
            core_kwargs=self.core_kwargs,
            **policy_kwargs,
        ).to(self.device)
        self.rollout_buffer = make_sequence_buffer(  # type: ignore[assignment]
            self.observation_space,
            self.n_steps,
            action_space=self.action_space,
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )
        with torch.no_grad():
            self._last_core_state = self.policy.initial_state(self.n_envs)
        self._activation_recorder = ActivationRecorder()
        self._rollouts = 0
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def _excluded_save_params(self) -> list[str]:
        return super()._excluded_save_params() + ["_last_core_state", "_activation_recorder"]

    # ------------------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike | io.BufferedIOBase, exclude: Any = None, include: Any = None) -> None:
        """Write a model zip of plain JSON and state dicts (``agents.serialization``); no pickles.

        ``exclude``/``include`` are accepted for SB3 compatibility and ignored: the saved fields are fixed.
        """
        save_model(self, path)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfRecurrentPPO],
        path: str | os.PathLike | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: torch.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfRecurrentPPO:
        """Load a model zip without unpickling anything (``agents.serialization.load_model``).

        Raises ``agents.serialization.UnsafeModelError`` for a file that would need unpickling,
        ``agents.model_zip.CorruptModelError`` for a damaged, encrypted or oddly compressed zip and
        ``agents.model_zip.ModelTooLargeError`` for a member above the size limit (all ValueErrors).
        ``print_system_info`` and ``force_reset`` are accepted for SB3 compatibility
        (no observation is stored, so a loaded model always starts from a reset env).
        """
        return load_model(cls, path, env=env, device=device, custom_objects=custom_objects, **kwargs)

    # -------------------------------------------------------------------------------- rollouts
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """Fill the buffer with ``n_rollout_steps`` steps per env, carrying the core state."""
        assert isinstance(rollout_buffer, SequenceBuffer), "RecurrentPPO needs a sequence rollout buffer"
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        self._activation_recorder.reset()
        callback.on_rollout_start()
        state = self._last_core_state
        assert state is not None
        n_steps = 0
        while n_steps < n_rollout_steps:
            with torch.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                starts = torch.as_tensor(self._last_episode_starts, dtype=torch.float32, device=self.device)
                actions, values, log_probs, new_state = self.policy(obs_tensor, state, starts)
            info = self.policy.last_core_info
            if info is not None and getattr(info, "mask", None) is not None:
                self._activation_recorder.add(info.mask[0], starts)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)
            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            self._bootstrap_truncated(rewards, dones, infos, new_state)
            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values,
                log_probs,
                core_state=state,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            state = new_state
            self._last_core_state = state
        with torch.no_grad():
            starts = torch.as_tensor(dones, dtype=torch.float32, device=self.device)
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), state, starts)  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self._rollouts += 1
        first_of_interval = (self._rollouts - 1) % self.raster_interval == 0
        self._activation_recorder.record(self.logger, with_raster=first_of_interval)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _bootstrap_truncated(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict], state: CoreState) -> None:
        """Add gamma * V(terminal obs) to the reward of episodes cut by a time limit (SB3 GH#633)."""
        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                env_state = tuple(s[idx : idx + 1] for s in state)
                with torch.no_grad():
                    value = self.policy.predict_values(terminal_obs, env_state, torch.zeros(1, device=self.device))
                rewards[idx] += self.gamma * value.item()

    # ---------------------------------------------------------------------------------- update
    def _minibatch_loss(
        self, batch: SequenceBatch, clip_range: float, clip_range_vf: float | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """PPO clip loss of one minibatch of whole sequences, and its statistics."""
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = self.policy.evaluate_actions(
            batch.observations, actions, batch.initial_state, batch.episode_starts
        )
        values = values.flatten()
        advantages = batch.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        log_ratio = log_prob - batch.old_log_prob
        ratio = torch.exp(log_ratio)
        policy_loss = -torch.min(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
        value_loss = clipped_value_loss(values, batch.old_values, batch.returns, clip_range_vf)
        entropy_loss = -entropy.mean() if entropy is not None else log_prob.mean()
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        with torch.no_grad():
            stats = {
                "policy_gradient_loss": policy_loss.item(),
                "value_loss": value_loss.item(),
                "entropy_loss": entropy_loss.item(),
                "clip_fraction": ((ratio - 1).abs() > clip_range).float().mean().item(),
                "approx_kl": ((ratio - 1) - log_ratio).mean().item(),
            }
        return loss, stats

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        """Backward, clip and step; raise FloatingPointError before the step if loss or grads are not finite."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite PPO loss {loss.item()} (update {self._n_updates}); parameters left unchanged")
        self.policy.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        if not torch.isfinite(grad_norm):
            self.policy.optimizer.zero_grad()
            raise FloatingPointError(f"non-finite gradient norm (update {self._n_updates}); parameters left unchanged")
        self.policy.optimizer.step()

    def train(self) -> None:
        """Update the policy on the rollout buffer: n_epochs passes over minibatches of whole sequences."""
        self.policy.set_training_mode(False)  # dropout stays off: the PPO ratio is exact
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        n_minibatches = self._minibatch_count()
        history: dict[str, list[float]] = {}
        loss = torch.zeros(())
        continue_training = True
        for epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.sequence_minibatches(n_minibatches, self.bptt_length):
                loss, stats = self._minibatch_loss(batch, clip_range, clip_range_vf)
                for key, value in stats.items():
                    history.setdefault(key, []).append(value)
                if self.target_kl is not None and stats["approx_kl"] > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {epoch} due to reaching max kl: {stats['approx_kl']:.2f}")
                    break
                self._optimizer_step(loss)
            self._n_updates += 1
            if not continue_training:
                break
        for key, values in history.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))
        self.logger.record("train/loss", loss.item())
        self.logger.record(
            "train/explained_variance",
            explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()),
        )
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", torch.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def learn(
        self: SelfRecurrentPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "RecurrentPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRecurrentPPO:
        """Train for ``total_timesteps`` env steps (SB3 semantics; callbacks and progress bar work).

        The budget rule is SB3's: whole rollouts of ``n_steps * n_envs`` steps are collected until
        ``num_timesteps`` reaches ``total_timesteps`` (plus the steps done before, with
        ``reset_num_timesteps=False``), so training stops at the first rollout boundary at or past it. A
        rollout stopped by a callback is discarded without an update.
        """
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
