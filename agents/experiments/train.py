"""Training of one run dir (:func:`train_run`): a fresh RecurrentPPO or its checkpoint, callbacks, saves.

The config comes checked (:mod:`agents.experiments.validation`); this module builds the model and
trains it. The ``train`` command and the sweep's run tasks both train through :func:`train_run`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.utils import LinearSchedule

from agents import RecurrentPPO
from agents.experiments.callbacks import (CheckpointCallback, GracefulStop, PeriodicEvalCallback, ProgressCallback,
                                          PurgeStaleEventsCallback, StopOnSignalCallback)
from agents.experiments.config import dump_config, set_value
from agents.experiments.devices import resolve_device, torch_threads
from agents.experiments.files import remove_stale_temp_files
from agents.experiments.outcomes import Interrupted, TrainingDiverged
from agents.experiments.runs import (CHECKPOINT, CONFIG_FILE, FINAL_MODEL, TB_DIR, TRAIN_TB_NAME, atomic_save,
                                     is_run_dir, load_model, read_num_timesteps, read_run_config, refuse_existing,
                                     run_dir_lock)
from agents.experiments.validation import instructions_option, resolve_policy, validate_config
from agents.sizing import core_parameters
from envs import make_vec_env, parse_shifts
from rims_rl.errors import UserError


def schedule(value: float, kind: str):
    """``value`` for ``kind="constant"``; for ``"linear"`` a schedule of SB3's progress remaining
    (1 at the start of the run, 0 at ``timesteps``) that decays from ``value`` to 0."""
    return LinearSchedule(value, 0.0, 1.0) if kind == "linear" else value


def policy_kwargs_for(cfg: dict) -> dict | None:
    """``cfg['policy_kwargs']`` as the policy takes them (optimizer_class named -> the torch class)."""
    kwargs = dict(cfg["policy_kwargs"])
    if "optimizer_class" in kwargs:
        kwargs["optimizer_class"] = getattr(torch.optim, kwargs["optimizer_class"])
    return kwargs or None


def build_model(cfg: dict, env, run_dir: Path, device: str = "cpu"):
    """A fresh RecurrentPPO for ``cfg`` on ``env`` and torch ``device``, logging TensorBoard events to ``<run>/tb``.

    ``ppo.lr_schedule`` applies to the learning rate; ``ppo.clip_schedule`` to ``clip_range`` and
    ``clip_range_vf`` (as Kostrikov's and baselines' clip decay scale both).
    """
    ppo = dict(cfg["ppo"])
    learning_rate = schedule(float(ppo.pop("learning_rate")), ppo.pop("lr_schedule"))
    clip_kind = ppo.pop("clip_schedule", "constant")  # run dirs from before the key existed
    ppo["clip_range"] = schedule(float(ppo["clip_range"]), clip_kind)
    clip_range_vf = ppo.pop("clip_range_vf", None)
    ppo["clip_range_vf"] = None if clip_range_vf is None else schedule(float(clip_range_vf), clip_kind)
    return RecurrentPPO(
        resolve_policy(cfg), env, core=cfg["core"], core_kwargs=dict(cfg["cores"][cfg["core"]]) or None,
        learning_rate=learning_rate,
        policy_kwargs=policy_kwargs_for(cfg),
        tensorboard_log=str(run_dir / TB_DIR), seed=cfg["seed"], device=device, verbose=0, **ppo,
    )


def build_policy_for(cfg: dict):
    """The policy that ``cfg`` trains, freshly initialised on CPU, built on a one-env probe of its env (to count
    its parameters; nothing is trained or written)."""
    probe = make_vec_env(cfg["env"], n_envs=1, seed=0, training=False, instructions=instructions_option(cfg))
    try:
        policy_class = RecurrentPPO.policy_aliases[resolve_policy(cfg)]
        return policy_class(probe.observation_space, probe.action_space, lambda _: 0.0, core=cfg["core"],
                            core_kwargs=dict(cfg["cores"][cfg["core"]]) or None, **(policy_kwargs_for(cfg) or {}))
    finally:
        probe.close()


@dataclass
class TrainOutcome:
    """What one finished training run left behind."""

    run_dir: Path
    model_file: Path
    num_timesteps: int


def resume_config(run_dir: Path, timesteps: int | None = None) -> dict:
    """The config to continue ``run_dir`` with (``timesteps``: a new budget, None: the run's own); UserError,
    before any work, unless it is a run dir with a readable checkpoint of at most that many steps."""
    if not is_run_dir(run_dir):
        raise UserError(f"--resume {run_dir}: not a run dir ({CONFIG_FILE} is missing)")
    cfg = read_run_config(run_dir)
    if timesteps is not None:
        set_value(cfg, "timesteps", timesteps, source="--timesteps")
    validate_config(cfg)
    if not (run_dir / CHECKPOINT).is_file():
        raise UserError(f"--resume {run_dir}: no checkpoint to resume from ({CHECKPOINT} is missing); "
                        f"the run stopped before its first checkpoint: remove the dir and train again")
    done = read_num_timesteps(run_dir / CHECKPOINT)  # a corrupt checkpoint is reported before any work
    if timesteps is not None and timesteps < done:
        raise UserError(f"--timesteps {timesteps} is below the {done} steps {run_dir} has done; "
                        f"give at least {done}")
    return cfg


def nothing_to_resume(run_dir: Path, timesteps: int | None = None) -> str | None:
    """Why ``train --resume run_dir`` (with ``--timesteps timesteps``, None: not given) has nothing to do, or
    None: the run has finished (``model.zip`` written) and the budget asked for is no more than its steps.

    The message says which budget was asked, the run's own or ``--timesteps``, and how to extend the run.
    """
    if not (run_dir / FINAL_MODEL).is_file():
        return None
    done = read_num_timesteps(run_dir / CHECKPOINT)
    budget = read_run_config(run_dir)["timesteps"] if timesteps is None else timesteps
    if budget > done:
        return None
    asked = f"its budget of {budget}" if timesteps is None else f"--timesteps {timesteps}"
    return (f"{run_dir} has finished: {done} steps for {asked}; nothing to train "
            f"(give --timesteps N above {done} to extend it)")


def train_run(cfg: dict, run_dir: Path, resume: bool = False, progress: bool = True, device: str | None = None,
              callbacks: Sequence[Any] = ()) -> TrainOutcome:
    """Train (or continue) the run in ``run_dir`` up to ``cfg['timesteps']`` steps.

    The run dir is locked for the whole call (:func:`agents.experiments.runs.run_dir_lock`): a second
    process training or resuming it gets a one-line UserError naming this one's PID.
    ``device``: the torch device (default: the config's ``device``, ``auto`` for old runs); checked
    before anything is created. ``callbacks``: extra SB3 callbacks (the sweep's progress reports).

    Fresh: ``run_dir`` must not exist; it is created with ``config.yaml``. Resume: the run's
    ``checkpoints/last.zip`` (weights, optimizer state, step count) is loaded and ``learn`` continues
    with ``reset_num_timesteps=False``; without a checkpoint (``demo`` re-running a run that was
    stopped before its first one) it starts again from step 0.
    A periodic checkpoint is written every ``checkpoint_freq`` steps, a final one and ``model.zip``
    at the end. SIGINT/SIGTERM: checkpoint, then :class:`Interrupted`. Non-finite loss:
    :class:`TrainingDiverged`, the last good checkpoint untouched.
    """
    device = resolve_device(device if device is not None else cfg.get("device", "auto"))
    with run_dir_lock(run_dir):
        return _train_locked(cfg, run_dir, resume, progress, device, list(callbacks))


def _train_locked(cfg: dict, run_dir: Path, resume: bool, progress: bool, device: str,
                  extra_callbacks: list[Any]) -> TrainOutcome:
    checkpoint = run_dir / CHECKPOINT
    if not resume:
        refuse_existing(run_dir)
    if resume and run_dir.is_dir():
        for stale in remove_stale_temp_files(run_dir):
            print(f"removed {stale} (left by an interrupted write)")
    env = make_vec_env(cfg["env"], n_envs=cfg["n_envs"], seed=cfg["seed"], shifts=cfg["shifts"], training=True,
                       instructions=instructions_option(cfg))
    try:
        if resume and checkpoint.is_file():
            model = load_model(checkpoint, env=env, device=device)
            model.tensorboard_log = str(run_dir / TB_DIR)
            print(f"resuming {run_dir} from step {model.num_timesteps} ({checkpoint}) to a budget of "
                  f"{cfg['timesteps']} steps")
        else:
            model = build_model(cfg, env, run_dir, device)
            if resume:
                print(f"{run_dir} has no checkpoint yet: training from step 0")
    except BaseException:  # a checkpoint that cannot load: a sweep's Ray worker lives on, so close the env now
        env.close()
        raise
    cfg = {**cfg, "core_parameters": core_parameters(model.policy)}
    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (created or not is_run_dir(run_dir)  # a sweep run dir holding only its train.log
                or cfg["timesteps"] > read_run_config(run_dir)["timesteps"]):  # a resume only raises the budget
            dump_config(cfg, run_dir / CONFIG_FILE)
    except OSError:
        env.close()
        for directory in created:  # a full or read-only disk: leave no empty run dir behind
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise
    remaining = cfg["timesteps"] - model.num_timesteps
    callbacks = [CheckpointCallback(run_dir, cfg["checkpoint_freq"]), *extra_callbacks]
    if model.num_timesteps > 0:
        callbacks.append(PurgeStaleEventsCallback())
    if cfg["eval"]["freq"] > 0:
        callbacks.append(PeriodicEvalCallback(run_dir, cfg["env"], parse_shifts(cfg["eval"]["shifts"], cfg["env"]),
                                              cfg["eval"]["episodes"], cfg["eval"]["freq"], cfg["seed"]))
    bar = ProgressCallback(label=f"{cfg.get('label') or cfg['core']} seed {cfg['seed']}") if progress else None
    if bar is not None:
        callbacks.append(bar)
    try:
        with GracefulStop() as stop, torch_threads(cfg["threads"] or None):
            on_signal = StopOnSignalCallback(stop)
            callbacks.append(on_signal)
            if remaining > 0:
                try:
                    model.learn(remaining, callback=CallbackList(callbacks), tb_log_name=TRAIN_TB_NAME,
                                reset_num_timesteps=model.num_timesteps == 0)
                except FloatingPointError as e:
                    kept = (f"the last good checkpoint is {checkpoint} (step {read_num_timesteps(checkpoint)})"
                            if checkpoint.is_file() else "no checkpoint had been written yet")
                    raise TrainingDiverged(
                        f"training of {run_dir} stopped at step {model.num_timesteps}: non-finite loss ({e}); "
                        f"{kept}; try a lower --set ppo.learning_rate") from None
                except KeyboardInterrupt:
                    raise Interrupted(f"interrupted twice: stopped without a new checkpoint; "
                                      f"resume from the last one with: rims-rl train --resume {run_dir}") from None
            if stop.signal_name is not None and on_signal.kept_steps is not None:
                model.num_timesteps = on_signal.kept_steps  # the stopped rollout's steps were discarded
            atomic_save(model, checkpoint)
            if stop.signal_name is not None:
                raise Interrupted(f"{stop.signal_name}: stopped at step {model.num_timesteps}, checkpoint saved to "
                                  f"{checkpoint}; continue with: rims-rl train --resume {run_dir}", stop.signal_name)
            atomic_save(model, run_dir / FINAL_MODEL)
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return TrainOutcome(run_dir, run_dir / FINAL_MODEL, model.num_timesteps)
