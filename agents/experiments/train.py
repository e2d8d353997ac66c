"""Config resolution and training of one run dir (``train_run``), and the ``train`` command.

Each function validates its input first (UserError, one line) and only then creates files, so a
bad flag never leaves a half-made run dir behind.
"""
from __future__ import annotations

import copy
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from agents.experiments.config import CORES, UserError, apply_overrides, first_line, dump_config, load_config, set_value
from agents.experiments.devices import check_device_name, resolve_device
from agents.experiments.evaluation import torch_threads
from agents.experiments.files import remove_stale_temp_files
from agents.experiments.runs import (CHECKPOINT, CONFIG_FILE, FINAL_MODEL, TB_DIR, TRAIN_TB_NAME, atomic_save,
                                     is_run_dir, load_model, read_num_timesteps, read_run_config, refuse_existing,
                                     run_dir_for, run_dir_lock)

EVAL_SEED = 1000  # evaluation env seeds differ from the training seeds (0, 1, ...)
SCHEDULES = ("linear", "constant")  # ppo.lr_schedule, ppo.clip_schedule


class Interrupted(Exception):
    """Training stopped by a signal; ``exit_code`` is 128 + the signal number (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, message: str, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.exit_code = 128 + int(getattr(signal, signal_name))


class TrainingDiverged(Exception):
    """Training stopped by a non-finite loss; the last good checkpoint is kept (exit code 1)."""


# ---------------------------------------------------------------- config resolution

def resolve_config(config: str | None, overrides: Sequence[str] = (), **flags: Any) -> dict:
    """Preset or YAML file, then ``--set`` overrides, then explicit flags (``None`` = not given).

    ``flags`` maps config keys ("eval.freq" written as ``eval__freq``) to values. The env
    ``null`` becomes ``envs.DEFAULT_ENV_ID``. The result is validated (:func:`validate_config`).
    """
    cfg = apply_overrides(load_config(config), overrides)
    for name, value in flags.items():
        if value is not None:
            key = name.replace("__", ".")
            set_value(cfg, key, value, source=f"--{key.replace('_', '-').replace('.', '-')}")
    if cfg.get("env") is None:
        from envs import DEFAULT_ENV_ID

        cfg["env"] = DEFAULT_ENV_ID
    validate_config(cfg)
    cfg["policy"] = resolve_policy(cfg)
    return cfg


MAX_TIMESTEPS = 2**62  # the step counter (and TensorBoard's step) is an int64
MAX_SEED = 2**32 - 1  # numpy's seeds
OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop", "Adamax")  # policy_kwargs.optimizer_class

POLICIES = ("auto", "CnnPolicy", "MlpPolicy", "MultiInputPolicy")


def instructions_option(cfg: dict) -> bool | str:
    """The env's ``instructions`` option of a config: ``null`` -> "auto"; a run config written before the
    key existed -> False (such runs always saw the image alone, so resuming keeps their observation)."""
    if "instructions" not in cfg:
        return False
    value = cfg["instructions"]
    return "auto" if value is None else value


def resolve_policy(cfg: dict) -> str:
    """The policy class name of a config: ``auto`` -> MultiInputPolicy where the env's observation holds
    the mission (envs.uses_instructions), else CnnPolicy. UserError for a policy that cannot read the
    observation the env gives."""
    from envs import uses_instructions

    with_mission = uses_instructions(cfg["env"], instructions_option(cfg))
    policy = cfg["policy"]
    if policy == "auto":
        return "MultiInputPolicy" if with_mission else "CnnPolicy"
    if with_mission and policy != "MultiInputPolicy":
        raise UserError(f"policy {policy} cannot read the mission that {cfg['env']} puts in its observations; "
                        f"valid: MultiInputPolicy or auto (or instructions: false for the image alone)")
    if not with_mission and policy == "MultiInputPolicy":
        raise UserError(f"policy MultiInputPolicy needs the mission in the observation, which {cfg['env']} does not "
                        f"give with instructions={instructions_option(cfg)}; valid: CnnPolicy, MlpPolicy, auto "
                        f"(or instructions: true)")
    return policy


def validate_config(cfg: dict) -> None:
    """Raise UserError (or the envs'/rims_rl's one-line ValueError) for a config that cannot run.

    Everything that would fail later (at the first update, the first evaluation, the first save)
    is refused here, before any file is written.
    """
    from envs import list_shifts, parse_shifts

    from agents.sequences import chunks_per_env

    if cfg["core"] not in CORES:
        raise UserError(f"unknown core {cfg['core']!r}; valid cores: {', '.join(CORES)}")
    list_shifts(cfg["env"])  # unknown env -> ValueError naming the valid ones
    parse_shifts(cfg["shifts"], cfg["env"])
    parse_shifts(cfg["eval"]["shifts"], cfg["env"])
    for key in ("timesteps", "n_envs"):
        if cfg[key] < 1:
            raise UserError(f"{key} must be >= 1, got {cfg[key]}")
    if cfg["timesteps"] > MAX_TIMESTEPS:
        raise UserError(f"timesteps must be at most 2**62 (the step counter is an int64), got {cfg['timesteps']}")
    check_seed(cfg["seed"], "seed")
    for key in ("checkpoint_freq",):
        if cfg[key] < 0:
            raise UserError(f"{key} must be >= 0, got {cfg[key]}")
    check_device_name(cfg.get("device", "auto"))  # config.yaml of runs made before the key existed: auto
    if cfg["threads"] < 0:
        raise UserError(f"threads must be >= 0 (0 = torch's default), got {cfg['threads']}")
    if cfg["eval"]["freq"] < 0:
        raise UserError(f"eval.freq must be >= 0 (0 = no periodic evaluation), got {cfg['eval']['freq']}")
    if cfg["eval"]["episodes"] < 1:
        raise UserError(f"eval.episodes must be >= 1, got {cfg['eval']['episodes']}")
    _validate_ppo(cfg["ppo"])
    if cfg["policy"] not in POLICIES:
        raise UserError(f"unknown policy {cfg['policy']!r}; valid: {', '.join(POLICIES)}")
    validate_policy_kwargs(resolve_policy(cfg), cfg["policy_kwargs"], cfg["core"])
    if cfg["core"] == "rims":
        from rims_rl import RIMsConfig

        RIMsConfig(**cfg["cores"]["rims"])
    elif cfg["core"] in ("lstm", "gru") and not _is_int(cfg["cores"][cfg["core"]].get("hidden_size"), 1):
        raise UserError(f"cores.{cfg['core']}.hidden_size must be an integer >= 1, "
                        f"got {cfg['cores'][cfg['core']].get('hidden_size')!r}")
    chunks_per_env(cfg["ppo"]["n_steps"], cfg["n_envs"], cfg["ppo"]["n_minibatches"], cfg["ppo"]["bptt_length"])


def check_seed(seed: int, name: str = "--seed") -> None:
    """UserError unless ``seed`` is an integer in 0 .. 2**32 - 1 (what numpy accepts)."""
    if not _is_int(seed, 0) or seed > MAX_SEED:
        raise UserError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _validate_ppo(ppo: dict) -> None:
    """The PPO values that cannot train (or would fail at the first update)."""
    for key in ("lr_schedule", "clip_schedule"):
        if ppo.get(key, "constant") not in SCHEDULES:
            raise UserError(f"ppo.{key} must be {' or '.join(SCHEDULES)}, got {ppo[key]!r}")
    if not _positive_number(ppo["clip_range"]):
        raise UserError(f"ppo.clip_range must be a number > 0, got {ppo['clip_range']!r}")
    if ppo.get("clip_range_vf") is not None and not _positive_number(ppo["clip_range_vf"]):
        raise UserError(f"ppo.clip_range_vf must be null (no value clipping) or a number > 0, "
                        f"got {ppo['clip_range_vf']!r}")

    def number(key: str) -> float:
        value = ppo[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"ppo.{key} must be a finite number, got {value!r}")
        return float(value)

    for key in ("n_steps", "n_minibatches", "n_epochs"):
        if not _is_int(ppo[key], 1):
            raise UserError(f"ppo.{key} must be an integer >= 1, got {ppo[key]!r}")
    checks = {
        "learning_rate": (lambda v: v > 0, "> 0"),
        "gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "gae_lambda": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        "ent_coef": (lambda v: v >= 0, ">= 0"),
        "vf_coef": (lambda v: v >= 0, ">= 0"),
        "max_grad_norm": (lambda v: v > 0, "> 0"),
    }
    for key, (ok, valid) in checks.items():
        if not ok(number(key)):
            raise UserError(f"ppo.{key} must be {valid}, got {ppo[key]!r}")


# Allowed values of the policy's keyword arguments: (check, what is valid).
_POLICY_KWARG_CHECKS: dict[str, tuple[Any, str]] = {
    "features_dim": (lambda v: v is None or _is_int(v, 1), "null or an integer >= 1"),
    "net_arch": (lambda v: isinstance(v, list) and all(_is_int(h, 1) for h in v), "a list of integers >= 1"),
    "input_rows": (lambda v: isinstance(v, bool), "true or false"),
    "ortho_init": (lambda v: isinstance(v, bool), "true or false"),
    "normalize_images": (lambda v: v is None or isinstance(v, bool), "null, true or false"),
    "log_std_init": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "optimizer_class": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "optimizer_kwargs": (lambda v: v is None or isinstance(v, dict), "a mapping of optimizer arguments"),
    "use_sde": (lambda v: v is False, "false"),
    # MultiInputPolicy (agents.extractors.INSTRUCTION_ENCODERS, CONDITIONINGS)
    "instruction_encoder": (lambda v: v in ("gru", "bow"), "gru or bow"),
    "conditioning": (lambda v: v in ("film", "concat"), "film or concat"),
    "instruction_dim": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "word_dim": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "instruction_row": (lambda v: isinstance(v, bool), "true or false"),
    "one_hot": (lambda v: v is None or isinstance(v, bool), "null, true or false"),
}


def policy_kwarg_names(policy: str) -> list[str]:
    """The keyword arguments ``policy_kwargs`` may hold: those of the policy class, less what the run sets."""
    import inspect

    from agents import RecurrentPPO

    cls = RecurrentPPO.policy_aliases[policy]
    for klass in cls.__mro__:  # MlpPolicy(*args, **kwargs) -> the first __init__ with named parameters
        params = inspect.signature(klass.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values()):
            break
    taken = {"self", "observation_space", "action_space", "lr_schedule", "core", "core_kwargs", "cnn"}
    return [n for n, p in params.items() if n not in taken and p.kind is not inspect.Parameter.VAR_KEYWORD]


def validate_policy_kwargs(policy: str, kwargs: dict, core: str) -> None:
    """UserError for a ``policy_kwargs`` key the policy does not take or a value it cannot use."""
    valid = policy_kwarg_names(policy) if kwargs else []  # no torch import where there is nothing to check
    for key, value in kwargs.items():
        if key not in valid:
            raise UserError(f"policy_kwargs.{key} is not an argument of {policy}; valid: {', '.join(valid)}")
        check, allowed = _POLICY_KWARG_CHECKS.get(key, (lambda v: True, ""))
        if not check(value):
            raise UserError(f"policy_kwargs.{key} must be {allowed}, got {value!r}")
    if kwargs.get("input_rows") and core != "rims":
        raise UserError(f"policy_kwargs.input_rows=true needs core rims, got core {core!r}")
    if kwargs.get("optimizer_kwargs"):
        import torch

        optimizer = getattr(torch.optim, kwargs.get("optimizer_class", "Adam"))
        try:
            optimizer([torch.zeros(1, requires_grad=True)], **{"lr": 1e-3, **kwargs["optimizer_kwargs"]})
        except (TypeError, ValueError) as e:
            raise UserError(f"policy_kwargs.optimizer_kwargs {kwargs['optimizer_kwargs']!r}: "
                            f"{first_line(e)}") from None


def policy_kwargs_for(cfg: dict) -> dict | None:
    """``cfg['policy_kwargs']`` as the policy takes them (optimizer_class named -> the torch class)."""
    import torch

    kwargs = dict(cfg["policy_kwargs"])
    if "optimizer_class" in kwargs:
        kwargs["optimizer_class"] = getattr(torch.optim, kwargs["optimizer_class"])
    return kwargs or None


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _run_config(cfg: dict, core: str, seed: int) -> dict:
    out = copy.deepcopy(cfg)
    out["core"], out["seed"] = core, int(seed)
    validate_config(out)
    return out


# ---------------------------------------------------------------- training

def schedule(value: float, kind: str):
    """``value`` for ``kind="constant"``; for ``"linear"`` a schedule of SB3's progress remaining
    (1 at the start of the run, 0 at ``timesteps``) that decays from ``value`` to 0."""
    from stable_baselines3.common.utils import LinearSchedule

    return LinearSchedule(value, 0.0, 1.0) if kind == "linear" else value


def build_model(cfg: dict, env, run_dir: Path, device: str = "cpu"):
    """A fresh RecurrentPPO for ``cfg`` on ``env`` and torch ``device``, logging TensorBoard events to ``<run>/tb``.

    ``ppo.lr_schedule`` applies to the learning rate; ``ppo.clip_schedule`` to ``clip_range`` and
    ``clip_range_vf`` (as Kostrikov's and baselines' clip decay scale both).
    """
    from agents import RecurrentPPO

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


@dataclass
class TrainOutcome:
    """What one finished training run left behind."""

    run_dir: Path
    model_file: Path
    num_timesteps: int


def check_logdir(logdir: str | os.PathLike) -> None:
    """UserError if ``logdir`` (or a parent of it) exists but is not a directory."""
    for path in (Path(logdir), *Path(logdir).parents):
        if path.exists() and not path.is_dir():
            raise UserError(f"--logdir {logdir}: {path} is a file, not a directory")


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
    from envs import make_vec_env, parse_shifts
    from stable_baselines3.common.callbacks import CallbackList

    from agents.experiments.callbacks import (CheckpointCallback, GracefulStop, PeriodicEvalCallback, ProgressCallback,
                                  PurgeStaleEventsCallback, StopOnSignalCallback)

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
            print(f"resuming {run_dir} from step {model.num_timesteps} ({checkpoint})")
        else:
            model = build_model(cfg, env, run_dir, device)
            if resume:
                print(f"{run_dir} has no checkpoint yet: training from step 0")
    except BaseException:  # a checkpoint that cannot load: a sweep's Ray worker lives on, so close the env now
        env.close()
        raise
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
    bar = ProgressCallback(label=f"{cfg['core']} seed {cfg['seed']}") if progress else None
    if bar is not None:
        callbacks.append(bar)
    try:
        with GracefulStop() as stop, torch_threads(cfg["threads"] or None):
            callbacks.append(StopOnSignalCallback(stop))
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


def train(
    config: str | None = None,
    overrides: Sequence[str] = (),
    cores: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    logdir: str | os.PathLike = "runs",
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    **flags: Any,
) -> list[TrainOutcome]:
    """The ``train`` command: one run per (core, seed), or continue the run dir ``resume``.

    ``flags``: config keys given as flags (``env``, ``timesteps``, ``n_envs``, ``shifts``,
    ``checkpoint_freq``, ``eval__freq``, ``eval__episodes``, ``eval__shifts``, ``device``); None = from
    config. Every run dir is checked before the first run starts. With ``resume`` only ``timesteps``
    and ``device`` (where to continue it, not stored in its config) may be given.
    """
    if resume is not None:
        extra = [k for k, v in flags.items() if v is not None and k not in ("timesteps", "device")]
        extra += ["--config"] * (config is not None)
        extra += ["--set"] * bool(overrides) + ["--core"] * bool(cores) + ["--seed"] * bool(seeds)
        if extra:
            names = ", ".join(e if e.startswith("--") else "--" + e.replace("__", "-").replace("_", "-")
                              for e in extra)
            raise UserError(f"--resume continues a run with its own config.yaml; drop {names} "
                            f"(only --timesteps and --device may be given)")
        run_dir = Path(resume)
        if not is_run_dir(run_dir):
            raise UserError(f"--resume {run_dir}: not a run dir ({CONFIG_FILE} is missing)")
        cfg = read_run_config(run_dir)
        if flags.get("timesteps") is not None:
            set_value(cfg, "timesteps", flags["timesteps"], source="--timesteps")
        validate_config(cfg)
        if not (run_dir / CHECKPOINT).is_file():
            raise UserError(f"--resume {run_dir}: no checkpoint to resume from ({CHECKPOINT} is missing); "
                            f"the run stopped before its first checkpoint: remove the dir and train again")
        done = read_num_timesteps(run_dir / CHECKPOINT)  # a corrupt checkpoint is reported before any work
        if cfg["timesteps"] < done:
            raise UserError(f"--timesteps {cfg['timesteps']} is below the {done} steps {run_dir} has done; "
                            f"give at least {done}")
        return [train_run(cfg, run_dir, resume=True, progress=progress, device=flags.get("device"))]
    base = resolve_config(config, overrides, **flags)
    check_logdir(logdir)
    plan = list(dict.fromkeys((core, seed) for core in (cores or [base["core"]])  # a repeated core/seed: one run
                              for seed in (seeds or [base["seed"]])))
    runs = [(_run_config(base, core, seed), run_dir_for(logdir, base["env"], core, seed)) for core, seed in plan]
    for _, run_dir in runs:
        refuse_existing(run_dir)
    outcomes = []
    for cfg, run_dir in runs:
        print(f"training {cfg['core']} (seed {cfg['seed']}) on {cfg['env']} for {cfg['timesteps']} steps -> {run_dir}")
        outcomes.append(train_run(cfg, run_dir, progress=progress))
        print(f"saved {outcomes[-1].model_file} (step {outcomes[-1].num_timesteps})")
    print(f"TensorBoard: tensorboard --logdir {logdir}")
    return outcomes


