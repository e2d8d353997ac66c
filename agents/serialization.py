"""Model files that never run code when loaded: save and load ``RecurrentPPO`` without unpickling.

A model file is a zip with the names SB3 uses (so ``model.zip`` / ``checkpoints/last.zip`` keep
their names): ``data`` is plain JSON, and ``policy.pth`` / ``policy.optimizer.pth`` are
``torch.save``d state dicts, read back with ``torch.load(weights_only=True)``. Nothing in ``data`` is a
pickle: observation and action spaces are JSON descriptions (Box, Discrete, MultiDiscrete,
MultiBinary, Text, Dict, Tuple), schedules are numbers, ``{"linear": ...}`` or a sampled
``{"table": ...}``, the policy class is an alias name (``MlpPolicy``) and classes inside
``policy_kwargs`` (``optimizer_class``) are names from a short allowlist.

Files written by SB3's own ``save`` (rims-rl before this format) are read through the same safe
path: their pickled fields (``:serialized:``) are never unpickled. Spaces come from the env passed
to ``load`` (or ``custom_objects``), schedules and the policy class from the readable text SB3
writes beside each pickle. A pickled field outside the known SB3 ones, or a field of this format
that is not expected, is refused with one line (:class:`UnsafeModelError`).
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.save_util import load_from_zip_file, open_path
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule, check_for_correct_spaces

from agents.checks import OPTIMIZERS

FORMAT_KEY = "rims_rl_format"
FORMAT_VERSION = 1
SERIALIZED = ":serialized:"

# Attributes saved as plain JSON values (everything a loaded model needs besides spaces and schedules).
PLAIN_FIELDS = (
    "verbose", "num_timesteps", "_total_timesteps", "_num_timesteps_at_start", "seed", "_episode_num",
    "_current_progress_remaining", "_stats_window_size", "_n_updates", "n_envs", "n_steps", "gamma",
    "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "core", "core_kwargs", "batch_size", "n_minibatches",
    "bptt_length", "n_epochs", "normalize_advantage", "target_kl", "raster_interval", "_rollouts",
)
SCHEDULE_FIELDS = ("learning_rate", "clip_range", "clip_range_vf")
NEW_FORMAT_FIELDS = frozenset((FORMAT_KEY, "policy", "observation_space", "action_space", "policy_kwargs",
                               *PLAIN_FIELDS, *SCHEDULE_FIELDS))
# Fields that SB3's own save pickles; in such files they are skipped (rebuilt), never unpickled.
LEGACY_PICKLED_FIELDS = frozenset(("policy_class", "observation_space", "action_space", "learning_rate",
                                   "lr_schedule", "clip_range", "clip_range_vf", "_last_obs", "_last_episode_starts",
                                   "_last_original_obs", "ep_info_buffer", "ep_success_buffer", "action_noise",
                                   "rollout_buffer_class", "policy_kwargs"))
# Classes allowed inside policy_kwargs, by name.
ALLOWED_CLASSES: dict[str, type] = {
    f"torch.optim.{name}": getattr(torch.optim, name) for name in OPTIMIZERS
} | {f"torch.nn.{name}": getattr(torch.nn, name) for name in ("ReLU", "Tanh", "ELU", "GELU", "LeakyReLU", "SiLU")}
SCHEDULE_TABLE_POINTS = 101
_DTYPE_KINDS = "biuf"


class UnsafeModelError(ValueError):
    """A model file that cannot be loaded without running code from it (or is not a rims-rl model)."""


# ---------------------------------------------------------------------------- spaces

def _dtype_name(dtype: Any) -> str:
    name = np.dtype(dtype).name
    if np.dtype(dtype).kind not in _DTYPE_KINDS:
        raise ValueError(f"space dtype {name} cannot be saved; valid: bool, integer and float dtypes")
    return name


def _read_dtype(name: Any) -> np.dtype:
    if not isinstance(name, str) or not re.fullmatch(r"(bool|u?int(8|16|32|64)|float(16|32|64))", name):
        raise UnsafeModelError(f"unexpected space dtype {name!r}")
    return np.dtype(name)


def _bound(values: np.ndarray) -> Any:
    """A Box bound as one number when uniform (the common case), else nested lists."""
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return flat[0].item()
    return values.tolist()


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON description of ``space`` (ValueError for a kind that has none)."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": _dtype_name(space.dtype),
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist(),
                "dtype": _dtype_name(space.dtype)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Text):
        return {"type": "Text", "min_length": space.min_length, "max_length": space.max_length,
                "charset": "".join(space.character_set)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[key, space_to_json(sub)] for key, sub in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(sub) for sub in space.spaces]}
    raise ValueError(f"a {type(space).__name__} space cannot be saved; valid: Box, Discrete, MultiDiscrete, "
                     f"MultiBinary, Text, Dict, Tuple")


def space_from_json(desc: Any) -> spaces.Space:
    """The space described by :func:`space_to_json` (UnsafeModelError for anything else)."""
    if not isinstance(desc, dict) or not isinstance(desc.get("type"), str):
        raise UnsafeModelError(f"unexpected space description {str(desc)[:60]!r}")
    kind = desc["type"]
    try:
        if kind == "Box":
            dtype = _read_dtype(desc["dtype"])
            shape = tuple(int(s) for s in desc["shape"])
            low = np.broadcast_to(np.asarray(desc["low"], dtype=dtype), shape)
            high = np.broadcast_to(np.asarray(desc["high"], dtype=dtype), shape)
            return spaces.Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dtype)
        if kind == "Discrete":
            return spaces.Discrete(int(desc["n"]), start=int(desc["start"]))
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(np.asarray(desc["nvec"]), dtype=_read_dtype(desc["dtype"]),
                                        start=np.asarray(desc["start"]))
        if kind == "MultiBinary":
            n = desc["n"]
            return spaces.MultiBinary(n if isinstance(n, int) else [int(x) for x in n])
        if kind == "Text":
            return spaces.Text(int(desc["max_length"]), min_length=int(desc["min_length"]), charset=str(desc["charset"]))
        if kind == "Dict":
            return spaces.Dict({str(key): space_from_json(sub) for key, sub in desc["spaces"]})
        if kind == "Tuple":
            return spaces.Tuple([space_from_json(sub) for sub in desc["spaces"]])
    except UnsafeModelError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise UnsafeModelError(f"bad {kind} space description ({type(e).__name__}: {e})") from None
    raise UnsafeModelError(f"unexpected space type {kind!r}")


# ---------------------------------------------------------------------------- schedules

class TableSchedule:
    """A schedule given by its values at evenly spaced ``progress_remaining`` from 0 to 1."""

    def __init__(self, values: list[float]) -> None:
        self.values = [float(v) for v in values]

    def __call__(self, progress_remaining: float) -> float:
        return float(np.interp(progress_remaining, np.linspace(0.0, 1.0, len(self.values)), self.values))

    def __repr__(self) -> str:
        return f"TableSchedule({len(self.values)} points)"


def schedule_to_json(value: Any) -> Any:
    """A float, ``{"linear": {...}}`` or (any other callable) ``{"table": [values at 0..1]}``; None stays None."""
    while isinstance(value, FloatSchedule):
        value = value.value_schedule
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if value is None else float(value)
    if isinstance(value, ConstantSchedule):
        return float(value.val)
    if isinstance(value, LinearSchedule):
        return {"linear": {"start": float(value.start), "end": float(value.end), "end_fraction": float(value.end_fraction)}}
    if isinstance(value, TableSchedule):
        return {"table": list(value.values)}
    if callable(value):
        return {"table": [float(value(p)) for p in np.linspace(0.0, 1.0, SCHEDULE_TABLE_POINTS)]}
    raise ValueError(f"cannot save schedule {value!r}: expected a number or a callable")


def schedule_from_json(desc: Any, field: str) -> float | Callable[[float], float] | None:
    """The inverse of :func:`schedule_to_json`."""
    if desc is None or isinstance(desc, (int, float)) and not isinstance(desc, bool):
        return desc
    try:
        if isinstance(desc, dict) and set(desc) == {"linear"}:
            lin = desc["linear"]
            return LinearSchedule(float(lin["start"]), float(lin["end"]), float(lin["end_fraction"]))
        if isinstance(desc, dict) and set(desc) == {"table"} and len(desc["table"]) >= 2:
            return TableSchedule(desc["table"])
    except (KeyError, TypeError, ValueError):
        pass
    raise UnsafeModelError(f"unexpected value of field {field!r}: {str(desc)[:60]!r}")


_NUMBER = r"([-+0-9.eE]+|inf|nan)"


def _legacy_schedule(value: Any, field: str) -> Any:
    """A schedule from SB3's readable text beside a pickle (never the pickle); None if not readable."""
    if not (isinstance(value, dict) and SERIALIZED in value):
        return value
    text = " ".join(f"{k}={v}" for k, v in value.items() if k != SERIALIZED)
    linear = re.search(rf"start={_NUMBER},? *end={_NUMBER},? *end_fraction={_NUMBER}", text.replace("'", ""))
    if "LinearSchedule" in text and linear:
        return LinearSchedule(*(float(g) for g in linear.groups()))
    constant = re.search(rf"ConstantSchedule\(val={_NUMBER}\)", text)
    if constant:
        return float(constant.group(1))
    return None


# ---------------------------------------------------------------------------- policy kwargs

def _encode(value: Any, where: str) -> Any:
    if isinstance(value, type):
        for name, cls in ALLOWED_CLASSES.items():
            if value is cls:
                return {":class:": name}
        raise ValueError(f"cannot save {where}={value.__name__}: only these classes can be saved: "
                         f"{', '.join(ALLOWED_CLASSES)}")
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot save {where}={value!r}: only numbers, strings, lists, mappings and classes "
                     f"{', '.join(ALLOWED_CLASSES)}")


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {":class:"}:
            name = value[":class:"]
            if name not in ALLOWED_CLASSES:
                raise UnsafeModelError(f"unexpected class {str(name)[:60]!r} in {where}")
            return ALLOWED_CLASSES[name]
        if SERIALIZED in value:
            raise UnsafeModelError(f"unexpected serialized value in {where}")
        return {k: _decode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    return value


# ---------------------------------------------------------------------------- save

def model_data(model: Any) -> dict[str, Any]:
    """The JSON ``data`` of ``model``: plain fields, spaces, schedules, policy alias and kwargs."""
    aliases = {cls: name for name, cls in model.policy_aliases.items()}
    if model.policy_class not in aliases:
        raise ValueError(f"cannot save a model of policy class {model.policy_class.__name__}: only "
                         f"{', '.join(model.policy_aliases)} can be saved")
    data: dict[str, Any] = {FORMAT_KEY: FORMAT_VERSION, "policy": aliases[model.policy_class]}
    data.update({name: getattr(model, name) for name in PLAIN_FIELDS})
    data["core_kwargs"] = _encode(model.core_kwargs, "core_kwargs")
    data["policy_kwargs"] = _encode(dict(model.policy_kwargs or {}), "policy_kwargs")
    data["observation_space"] = space_to_json(model.observation_space)
    data["action_space"] = space_to_json(model.action_space)
    for name in SCHEDULE_FIELDS:
        data[name] = schedule_to_json(getattr(model, name))
    return data


def save_model(model: Any, path: str | os.PathLike | io.BufferedIOBase) -> None:
    """Write ``model`` (a RecurrentPPO) to ``path`` (``.zip`` added to a path without it) or a binary file."""
    text = json.dumps(model_data(model), indent=1)
    state_dicts, _ = model._get_torch_save_params()
    file = open_path(path, "w", verbose=0, suffix="zip")
    try:
        with zipfile.ZipFile(file, mode="w") as archive:
            archive.writestr("data", text)
            for name in state_dicts:
                obj = model
                for part in name.split("."):
                    obj = getattr(obj, part)
                with archive.open(f"{name}.pth", mode="w", force_zip64=True) as f:
                    torch.save(obj.state_dict(), f)
    finally:
        if isinstance(path, (str, os.PathLike)):
            file.close()


# ---------------------------------------------------------------------------- load

def read_data(path: str | os.PathLike | io.BufferedIOBase) -> dict[str, Any]:
    """The JSON ``data`` of a model zip, not unpickled (ValueError if the file is not a model zip)."""
    file = open_path(path, "r", verbose=0, suffix="zip")
    try:
        with zipfile.ZipFile(file) as archive:
            data = json.loads(archive.read("data").decode())
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsafeModelError(f"not a model zip ({type(e).__name__})") from None
    finally:
        if isinstance(path, (str, os.PathLike)):
            file.close()
        elif hasattr(file, "seek"):
            file.seek(0)
    if not isinstance(data, dict):
        raise UnsafeModelError("not a model zip (its data is not a mapping)")
    return data


def is_legacy(data: dict[str, Any]) -> bool:
    """True for SB3's own format (pickled fields beside readable text), False for this module's."""
    return FORMAT_KEY not in data


def _check_plain(data: dict[str, Any]) -> None:
    for name in PLAIN_FIELDS:
        value = data.get(name)
        if isinstance(value, dict) and name != "core_kwargs" or isinstance(value, list):
            raise UnsafeModelError(f"unexpected value of field {name!r}: {str(value)[:60]!r}")


def parse_data(data: dict[str, Any], policy_aliases: dict[str, type],
               custom_objects: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attributes for a model from its ``data`` (either format), never unpickling anything.

    The result holds ``policy_class``, the ``PLAIN_FIELDS`` present, the schedules, ``policy_kwargs``
    and the spaces (None where a legacy file only has them as pickles). ``custom_objects`` replace
    fields as in SB3. Raises :class:`UnsafeModelError` for unexpected fields.
    """
    custom = dict(custom_objects or {})
    if not is_legacy(data):
        if data[FORMAT_KEY] != FORMAT_VERSION:
            raise UnsafeModelError(f"model format {data[FORMAT_KEY]!r} is not supported; valid: {FORMAT_VERSION}")
        unexpected = sorted(set(data) - NEW_FORMAT_FIELDS)
        if unexpected:
            raise UnsafeModelError(f"unexpected field(s) {', '.join(unexpected)[:80]}")
        _check_plain(data)
        out = {name: data[name] for name in PLAIN_FIELDS if name in data}
        if data.get("policy") not in policy_aliases:
            raise UnsafeModelError(f"unknown policy {str(data.get('policy'))[:40]!r}; valid: {', '.join(policy_aliases)}")
        out["policy_class"] = policy_aliases[data["policy"]]
        out["core_kwargs"] = _decode(data.get("core_kwargs"), "core_kwargs")
        out["policy_kwargs"] = _decode(data.get("policy_kwargs") or {}, "policy_kwargs")
        for name in SCHEDULE_FIELDS:
            out[name] = schedule_from_json(data.get(name), name)
        for name in ("observation_space", "action_space"):
            out[name] = space_from_json(data.get(name))
    else:
        pickled = sorted(k for k, v in data.items() if isinstance(v, dict) and SERIALIZED in v)
        unexpected = [k for k in pickled if k not in LEGACY_PICKLED_FIELDS and k not in custom]
        if unexpected:
            raise UnsafeModelError(f"unexpected serialized field(s) {', '.join(unexpected)[:80]}: refused, "
                                   f"nothing was unpickled")
        _check_plain(data)
        out = {name: data[name] for name in PLAIN_FIELDS if name in data}
        out["policy_class"] = _legacy_policy_class(data.get("policy_class"), policy_aliases)
        kwargs = data.get("policy_kwargs") or {}
        if isinstance(kwargs, dict) and SERIALIZED in kwargs and "policy_kwargs" not in custom:
            raise UnsafeModelError("policy_kwargs are stored as a pickle: refused, nothing was unpickled; "
                                   "pass custom_objects={'policy_kwargs': ...}")
        out["policy_kwargs"] = _decode(kwargs if isinstance(kwargs, dict) else {}, "policy_kwargs")
        for name in SCHEDULE_FIELDS:
            out[name] = _legacy_schedule(data.get(name), name)
        out["observation_space"] = out["action_space"] = None
    out.update(custom)
    return out


def _legacy_policy_class(value: Any, policy_aliases: dict[str, type]) -> type | None:
    if isinstance(value, str):
        return policy_aliases.get(value)
    if isinstance(value, dict):
        text = " ".join(str(v) for k, v in value.items() if k != SERIALIZED)
        found = re.search(r"<function (\w+)\.__init__", text)
        if found and value.get("__module__") == "agents.policies":
            return policy_aliases.get(found.group(1))
    return None


def load_model(cls: type, path: str | os.PathLike | io.BufferedIOBase, env: Any = None,
               device: torch.device | str = "auto", custom_objects: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
    """Load a ``cls`` (RecurrentPPO) from a model zip without unpickling anything (see module doc).

    Spaces come from the file, else (a legacy file) from ``env`` or ``custom_objects``; with an env
    its spaces must match the file's. ``kwargs`` set attributes after loading, as in SB3. No
    observation is stored, so training a loaded model starts from a reset env (SB3's ``force_reset``).
    """
    data = parse_data(read_data(path), cls.policy_aliases, custom_objects)
    if data["policy_class"] is None:
        raise UnsafeModelError("the policy class is stored only as a pickle: refused, nothing was unpickled; "
                               f"pass custom_objects={{'policy_class': ...}} (one of {', '.join(cls.policy_aliases)})")
    if env is not None:
        env = cls._wrap_env(env, data.get("verbose", 0))
        for name in ("observation_space", "action_space"):
            if data[name] is None:
                data[name] = getattr(env, name)
        check_for_correct_spaces(env, data["observation_space"], data["action_space"])
        data["n_envs"] = env.num_envs
    elif data["observation_space"] is None or data["action_space"] is None:
        raise UnsafeModelError("the file is in SB3's format (spaces stored only as pickles, never read): "
                               "pass env= or custom_objects={'observation_space': ..., 'action_space': ...}")
    if data.get("learning_rate") is None:
        raise UnsafeModelError("the learning rate schedule is stored only as a pickle: refused, nothing was "
                               "unpickled; pass custom_objects={'learning_rate': ...}")
    if data.get("clip_range") is None:
        raise UnsafeModelError("the clip range is stored only as a pickle: refused; pass custom_objects={'clip_range': ...}")
    _, params, _ = load_from_zip_file(path, load_data=False, device=device)  # tensors: weights_only=True
    if hasattr(path, "seek"):
        path.seek(0)
    model = cls(policy=data.pop("policy_class"), env=env, device=device, _init_setup_model=False)
    model.__dict__.update(data)
    model.__dict__.update(kwargs)
    model._setup_model()
    if "_rollouts" in data:  # _setup_model starts the count at 0
        model._rollouts = data["_rollouts"]
    model.set_parameters(params, exact_match=True, device=device)
    return model
