"""A run's config from ``--config``, ``--set`` and flags, checked before anything is created.

:func:`resolve_config` reads a preset or YAML file, applies the overrides and flags and validates
the result (:func:`validate_config`); :func:`run_config` gives the config of one (core, seed) run.
Everything that would fail later (at the first update, the first evaluation, the first save) is
refused here with one UserError line, so a bad value never leaves a half-made run dir behind.
Torch is imported only to check ``policy_kwargs`` when a config has some (the sweep's driver checks
the built-in presets without it).
"""
from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Sequence

from agents.checks import (MATCHES, MAX_TIMESTEPS, OPTIMIZERS, POLICIES, SCHEDULES, check_core_name, check_label,
                           check_seed, is_int, is_positive_number)
from agents.experiments.config import apply_overrides, load_config, set_value
from agents.experiments.devices import check_device_name
from agents.sequences import chunks_per_env
from envs import DEFAULT_ENV_ID, list_shifts, parse_shifts, resolve_env, uses_instructions
from rims_rl import RIMsConfig
from rims_rl.errors import UserError, first_line


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
        cfg["env"] = DEFAULT_ENV_ID
    validate_config(cfg)
    cfg["policy"] = resolve_policy(cfg)
    return cfg


def run_config(cfg: dict, core: str, seed: int, label: str | None = None) -> dict:
    """A copy of ``cfg`` for the run of ``core`` and ``seed`` named ``label`` (default: the config's
    ``label``, else the core), validated."""
    out = copy.deepcopy(cfg)
    out["core"], out["seed"] = core, int(seed)
    out["label"] = label or cfg.get("label") or core
    validate_config(out)
    return out


def instructions_option(cfg: dict) -> bool | str:
    """The env's ``instructions`` option of a config: ``null`` -> "auto"; a run config written before the
    key existed -> False (such runs always saw the image alone, so resuming keeps their observation)."""
    if "instructions" not in cfg:
        return False
    value = cfg["instructions"]
    return "auto" if value is None else value


AUTO_POLICIES = {"image": "CnnPolicy", "vector": "MlpPolicy", "dict": "MultiInputPolicy"}


def resolve_policy(cfg: dict) -> str:
    """The policy class name of a config: ``auto`` -> MultiInputPolicy where the env's observation holds
    the mission (envs.uses_instructions) or is a dict, CnnPolicy for images, MlpPolicy for vectors. UserError
    for a policy that cannot read the observation the env gives."""
    with_mission = uses_instructions(cfg["env"], instructions_option(cfg))
    spec = resolve_env(cfg["env"])
    kind = "dict" if with_mission else spec.observation if spec.kind == "gym" else "image"  # Atari, MiniGrid
    policy = cfg["policy"]
    if policy == "auto":
        return AUTO_POLICIES[kind]
    if kind == "dict" and policy != "MultiInputPolicy":
        what = "the mission that" if with_mission else "the dict observations that"
        raise UserError(f"policy {policy} cannot read {what} {cfg['env']} gives; valid: MultiInputPolicy or auto"
                        + (" (or instructions: false for the image alone)" if with_mission else ""))
    if kind != "dict" and policy == "MultiInputPolicy":
        raise UserError(f"policy MultiInputPolicy needs dict observations (the mission, or a dict env), which "
                        f"{cfg['env']} does not give with instructions={instructions_option(cfg)}; valid: "
                        f"{AUTO_POLICIES[kind]}, auto" + (" (or instructions: true)" if spec.kind == "minigrid" else ""))
    return policy


def validate_config(cfg: dict) -> None:
    """Raise UserError for a config that cannot run."""
    check_core_name(cfg["core"])
    if cfg.get("label") is not None:
        check_label(cfg["label"], "label")
    if cfg.get("match", "none") not in MATCHES:
        raise UserError(f"match must be one of {', '.join(MATCHES)}, got {cfg['match']!r}")
    list_shifts(cfg["env"])  # an unknown env: UserError naming the valid ones
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
        RIMsConfig(**cfg["cores"]["rims"])
    elif cfg["core"] in ("lstm", "gru") and not is_int(cfg["cores"][cfg["core"]].get("hidden_size"), 1):
        raise UserError(f"cores.{cfg['core']}.hidden_size must be an integer >= 1, "
                        f"got {cfg['cores'][cfg['core']].get('hidden_size')!r}")
    chunks_per_env(cfg["ppo"]["n_steps"], cfg["n_envs"], cfg["ppo"]["n_minibatches"], cfg["ppo"]["bptt_length"])


def _validate_ppo(ppo: dict) -> None:
    """The PPO values that cannot train (or would fail at the first update)."""
    for key in ("lr_schedule", "clip_schedule"):
        if ppo.get(key, "constant") not in SCHEDULES:
            raise UserError(f"ppo.{key} must be {' or '.join(SCHEDULES)}, got {ppo[key]!r}")
    if not is_positive_number(ppo["clip_range"]):
        raise UserError(f"ppo.clip_range must be a number > 0, got {ppo['clip_range']!r}")
    if ppo.get("clip_range_vf") is not None and not is_positive_number(ppo["clip_range_vf"]):
        raise UserError(f"ppo.clip_range_vf must be null (no value clipping) or a number > 0, "
                        f"got {ppo['clip_range_vf']!r}")

    def number(key: str) -> float:
        value = ppo[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"ppo.{key} must be a finite number, got {value!r}")
        return float(value)

    for key in ("n_steps", "n_minibatches", "n_epochs"):
        if not is_int(ppo[key], 1):
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
    "features_dim": (lambda v: v is None or is_int(v, 1), "null or an integer >= 1"),
    "net_arch": (lambda v: isinstance(v, list) and all(is_int(h, 1) for h in v), "a list of integers >= 1"),
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
    "instruction_dim": (lambda v: is_int(v, 1), "an integer >= 1"),
    "word_dim": (lambda v: is_int(v, 1), "an integer >= 1"),
    "instruction_row": (lambda v: isinstance(v, bool), "true or false"),
    "one_hot": (lambda v: v is None or isinstance(v, bool), "null, true or false"),
}


def policy_kwarg_names(policy: str) -> list[str]:
    """The keyword arguments ``policy_kwargs`` may hold: those of the policy class, less what the run sets."""
    from agents import RecurrentPPO  # torch: only for a config that has policy_kwargs

    cls = RecurrentPPO.policy_aliases[policy]
    for klass in cls.__mro__:  # MlpPolicy(*args, **kwargs) -> the first __init__ with named parameters
        params = inspect.signature(klass.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values()):
            break
    taken = {"self", "observation_space", "action_space", "lr_schedule", "core", "core_kwargs", "cnn"}
    return [n for n, p in params.items() if n not in taken and p.kind is not inspect.Parameter.VAR_KEYWORD]


def validate_policy_kwargs(policy: str, kwargs: dict, core: str) -> None:
    """UserError for a ``policy_kwargs`` key the policy does not take or a value it cannot use."""
    valid = policy_kwarg_names(policy) if kwargs else []
    for key, value in kwargs.items():
        if key not in valid:
            raise UserError(f"policy_kwargs.{key} is not an argument of {policy}; valid: {', '.join(valid)}")
        check, allowed = _POLICY_KWARG_CHECKS.get(key, (lambda v: True, ""))
        if not check(value):
            raise UserError(f"policy_kwargs.{key} must be {allowed}, got {value!r}")
    if kwargs.get("input_rows") and core != "rims":
        raise UserError(f"policy_kwargs.input_rows=true needs core rims, got core {core!r}")
    if kwargs.get("input_rows") and policy == "MlpPolicy":
        raise UserError("policy_kwargs.input_rows=true needs CnnPolicy or MultiInputPolicy (rows are CNN "
                        "feature-map positions), got MlpPolicy")
    if kwargs.get("instruction_row") and not kwargs.get("input_rows"):
        raise UserError("policy_kwargs.instruction_row=true needs policy_kwargs.input_rows=true (core rims): "
                        "the mission is one more RIMs input row")
    if kwargs.get("optimizer_kwargs"):
        import torch  # the optimizer itself says which arguments it takes

        optimizer = getattr(torch.optim, kwargs.get("optimizer_class", "Adam"))
        try:
            optimizer([torch.zeros(1, requires_grad=True)], **{"lr": 1e-3, **kwargs["optimizer_kwargs"]})
        except (TypeError, ValueError) as e:
            raise UserError(f"policy_kwargs.optimizer_kwargs {kwargs['optimizer_kwargs']!r}: "
                            f"{first_line(e)}") from None
