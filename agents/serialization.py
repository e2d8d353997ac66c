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

Loading is bounded in memory: members are read through :mod:`agents.model_zip` (sizes checked
before decompression); the spaces declared in ``data`` are checked against the env's (or, without
an env, against :data:`MAX_SPACE_ELEMENTS`) before any array is built from them; and the model the
file describes is first built on torch's meta device, so its real tensors are allocated only once the
weights in the file are known to fit it exactly.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import warnings
import zipfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.save_util import open_path
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule, check_for_correct_spaces

from agents.checks import OPTIMIZERS
from agents.model_zip import (CorruptModelError, ModelTooLargeError, check_member, max_member_bytes, open_zip,
                              read_member)

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

DATA_MEMBER = "data"
STATE_DICTS = ("policy", "policy.optimizer")  # each saved as the member "<name>.pth"
SPACE_FIELDS = ("observation_space", "action_space")
MAX_DATA_BYTES = 16 * 2**20  # the JSON data: a few KB in a real model, at most a few MB of Box bounds
# Without an env to compare them with, the spaces of a model may declare at most this many elements
# together (Box elements, Discrete choices, MultiDiscrete choices, ...): 40x a raw Atari frame.
MAX_SPACE_ELEMENTS = 2**22
MAX_SUBSPACES = 256  # spaces in one declaration, Dict and Tuple entries included


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


_SATURATED = 2**63


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UnsafeModelError(f"bad {what} {str(value)[:40]!r} in a space description")
    return value


def _int_tree(value: Any, what: str) -> tuple[Any, int, int]:
    """(``value`` as nested tuples, the product of its leaves, the sum of its leaves); saturating."""
    if not isinstance(value, list):
        n = _count(value, what)
        return n, n, n
    nested, product, total = [], 1, 0
    for item in value:
        sub, sub_product, sub_total = _int_tree(item, what)
        nested.append(sub)
        product, total = min(product * sub_product, _SATURATED), min(total + sub_total, _SATURATED)
    return tuple(nested), product, total


def space_outline(desc: Any, budget: list[int] | None = None) -> tuple[tuple, int]:
    """The kind and shape of a space description, and its size in elements, without building anything.

    The outline compares equal for spaces of the same kind and shape (bounds and dtypes aside). The
    size counts Box elements, Discrete and MultiDiscrete choices, MultiBinary bits and Text characters.
    :param budget: ``[spaces left]``, shared by nested calls (default :data:`MAX_SUBSPACES`)
    :return: ``(outline, size)``; UnsafeModelError for a description that is not a space's
    """
    budget = [MAX_SUBSPACES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise UnsafeModelError(f"a space description of more than {MAX_SUBSPACES} spaces")
    if not isinstance(desc, dict) or not isinstance(desc.get("type"), str):
        raise UnsafeModelError(f"unexpected space description {str(desc)[:60]!r}")
    kind = desc["type"]
    if kind == "Box":
        dims = desc.get("shape")
        if not isinstance(dims, list) or any(isinstance(d, list) for d in dims):
            raise UnsafeModelError(f"bad Box space description (shape {str(dims)[:40]!r})")
        shape, size, _ = _int_tree(dims, "Box dimension")
        return (kind, shape), size
    if kind == "Discrete":
        n = _count(desc.get("n"), "Discrete n")
        return (kind, n), n
    if kind == "MultiDiscrete":
        nvec, _, size = _int_tree(desc.get("nvec"), "MultiDiscrete nvec")
        return (kind, nvec), size
    if kind == "MultiBinary":
        n, size, _ = _int_tree(desc.get("n"), "MultiBinary n")
        return (kind, n), size
    if kind == "Text":
        n = _count(desc.get("max_length"), "Text max_length")
        return (kind, n), n
    if kind in ("Dict", "Tuple"):
        subs = desc.get("spaces")
        if not isinstance(subs, list) or kind == "Dict" and not all(
                isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) for e in subs):
            raise UnsafeModelError(f"bad {kind} space description")
        entries, size = [], 0
        for entry in subs:
            key, sub = entry if kind == "Dict" else (None, entry)
            outline, sub_size = space_outline(sub, budget)
            entries.append(outline if key is None else (key, outline))
            size = min(size + sub_size, _SATURATED)
        return (kind, tuple(entries)), size
    raise UnsafeModelError(f"unexpected space type {kind[:40]!r}")


def outline_text(outline: tuple, width: int = 120) -> str:
    """``Box[3, 7, 7]``, ``Discrete(3)``, ``Dict(image: Box[7, 7, 3], mission: Box[64])`` ... (cut at ``width``)."""
    def text(o: tuple) -> str:
        kind, body = o
        if kind == "Dict":
            return f"Dict({', '.join(f'{key}: {text(sub)}' for key, sub in body)})"
        if kind == "Tuple":
            return f"Tuple({', '.join(text(sub) for sub in body)})"
        if kind == "Text":
            return f"Text(max_length={body})"
        return f"{kind}{json.dumps(body)}" if isinstance(body, tuple) else f"{kind}({body})"

    full = text(outline)
    return full if len(full) <= width else full[:width - 3] + "..."


def policy_view(space: spaces.Space) -> spaces.Space:
    """``space`` as SB3's ``_wrap_env`` hands it to a policy: channel-last images made channel-first."""
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    def channel_last(sub: spaces.Space) -> bool:
        return is_image_space(sub) and not is_image_space_channels_first(sub)

    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: VecTransposeImage.transpose_space(sub) if channel_last(sub) else sub
                            for key, sub in space.spaces.items()})
    return VecTransposeImage.transpose_space(space) if channel_last(space) else space


def check_declared_spaces(data: dict[str, Any], expected: dict[str, spaces.Space]) -> None:
    """Check the spaces that ``data`` declares (those of :data:`SPACE_FIELDS` it has) before anything is built.

    :param expected: spaces the model must have, by field (those of the env it will run on, as
        :func:`policy_view` gives them): a declared space must have the same kind and shape. Fields
        without one may declare at most :data:`MAX_SPACE_ELEMENTS` elements together.
        UnsafeModelError names the field and both shapes.
    """
    unchecked: list[str] = []
    total = 0
    for name in (n for n in SPACE_FIELDS if n in data):
        try:
            outline, size = space_outline(data[name])
        except RecursionError:  # MultiDiscrete / MultiBinary sizes nested hundreds deep
            raise UnsafeModelError(f"{name} is nested too deeply") from None
        if expected.get(name) is not None:
            want, _ = space_outline(space_to_json(expected[name]), [2**31])
            if outline != want:
                kind = name.split("_")[0].capitalize()  # SB3's words for the same mismatch found later
                raise UnsafeModelError(f"{kind} spaces do not match: {name} in the file is {outline_text(outline)}; "
                                       f"the env's is {outline_text(want)}")
        else:
            unchecked.append(f"{name} {outline_text(outline, 60)}")
            total = min(total + size, _SATURATED)
    if total > MAX_SPACE_ELEMENTS:
        size = f"over {_SATURATED}" if total >= _SATURATED else str(total)
        raise UnsafeModelError(f"{' and '.join(unchecked)} declare {size} elements; without the env it runs on, "
                               f"a model may declare at most {MAX_SPACE_ELEMENTS} (pass env=...)")


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

@contextmanager
def open_model_zip(path: str | os.PathLike | io.BufferedIOBase) -> Iterator[zipfile.ZipFile]:
    """The zip at ``path`` (``.zip`` added to a path without it) or in a binary file, rewound after.

    The directory entries of every member a load reads are checked first
    (:func:`agents.model_zip.check_member`): CorruptModelError for a damaged, encrypted or oddly
    compressed one (or a missing ``data``), ModelTooLargeError for one above the size limit.
    """
    file = open_path(path, "r", verbose=0, suffix="zip")
    try:
        with open_zip(file) as archive:
            if DATA_MEMBER not in archive.NameToInfo:
                raise CorruptModelError(f"member {DATA_MEMBER!r} is missing")
            for name in (DATA_MEMBER, *(f"{d}.pth" for d in STATE_DICTS)):
                if name in archive.NameToInfo:  # a missing weights member is reported when a load reads it
                    check_member(archive.getinfo(name), _data_limit() if name == DATA_MEMBER else None)
            yield archive
    finally:
        if isinstance(path, (str, os.PathLike)):
            file.close()
        elif hasattr(file, "seek"):
            file.seek(0)


def _data_limit() -> int:
    return min(MAX_DATA_BYTES, max_member_bytes())


def _json_data(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        data = json.loads(read_member(archive, DATA_MEMBER, _data_limit()).decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, a 5000-digit int
        if isinstance(e, (CorruptModelError, ModelTooLargeError)):
            raise
        raise CorruptModelError(f"member 'data' is not JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise CorruptModelError("member 'data' is not a mapping")
    return data


def read_data(path: str | os.PathLike | io.BufferedIOBase) -> dict[str, Any]:
    """The JSON ``data`` of a model zip, not unpickled and read in bounded memory.

    Raises CorruptModelError (a ValueError) if the file is not a model zip or is damaged,
    ModelTooLargeError (a ValueError) if a member is above the size limit, OSError for I/O errors.
    """
    with open_model_zip(path) as archive:
        return _json_data(archive)


def is_legacy(data: dict[str, Any]) -> bool:
    """True for SB3's own format (pickled fields beside readable text), False for this module's."""
    return FORMAT_KEY not in data


def _check_plain(data: dict[str, Any]) -> None:
    for name in PLAIN_FIELDS:
        value = data.get(name)
        if isinstance(value, dict) and name != "core_kwargs" or isinstance(value, list):
            raise UnsafeModelError(f"unexpected value of field {name!r}: {str(value)[:60]!r}")


def parse_data(data: dict[str, Any], policy_aliases: dict[str, type],
               custom_objects: dict[str, Any] | None = None,
               expected_spaces: dict[str, spaces.Space] | None = None) -> dict[str, Any]:
    """Attributes for a model from its ``data`` (either format), never unpickling anything.

    The result holds ``policy_class``, the ``PLAIN_FIELDS`` present, the schedules, ``policy_kwargs``
    and the spaces (None where a legacy file only has them as pickles). ``custom_objects`` replace
    fields as in SB3. Declared spaces are checked (:func:`check_declared_spaces`, against
    ``expected_spaces`` by field) before they are built. Raises :class:`UnsafeModelError` for
    unexpected fields.
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
        declared = {name: data.get(name) for name in SPACE_FIELDS if name not in custom}
        check_declared_spaces(declared, expected_spaces or {})
        for name, desc in declared.items():
            out[name] = space_from_json(desc)
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


_ADVICE = re.compile(r"weights_only|safe_globals|trust")


def _torch_reason(error: BaseException) -> str:
    """The first sentence of a torch.load error, never its advice to load with ``weights_only=False``."""
    text = " ".join(str(error).split())
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if found:
        text = found.group(1)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s and not _ADVICE.search(s)]
    return sentences[0][:200] if sentences else type(error).__name__


def _read_tensors(archive: zipfile.ZipFile, member: str) -> Any:
    """What ``torch.load(weights_only=True)`` reads from ``member`` (onto the CPU), in bounded memory."""
    raw = read_member(archive, member)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns on stderr about pickle protocols: no second line
        try:
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # the weights-only unpickler refused an object: nothing ran
            raise UnsafeModelError(f"{member} holds more than tensors ({_torch_reason(e)}): refused, "
                                   f"nothing was unpickled") from None
        except Exception as e:  # torch raises RuntimeError, EOFError... for a damaged tensor file
            raise CorruptModelError(f"{member} is not a tensor file ({_torch_reason(e)})") from None


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def _check_state_dict(found: Any, expected: dict[str, torch.Tensor], member: str) -> None:
    if not isinstance(found, dict) or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise CorruptModelError(f"{member} is not a state dict of tensors")
    missing = [key for key in expected if key not in found]
    extra = [str(key) for key in found if key not in expected]
    if missing or extra:
        what = f"lacks tensor(s) {', '.join(missing)}" if missing else f"has unexpected tensor(s) {', '.join(extra)}"
        raise CorruptModelError(f"{member} {what[:120]} (the model its data describes)")
    for key, want in expected.items():
        if found[key].shape != want.shape:
            raise CorruptModelError(f"{member}: tensor {key!r} has shape {_shape(found[key])}; the model its data "
                                    f"describes has {_shape(want)}")


def _check_optimizer_state(found: Any, params: list[torch.Tensor], member: str) -> None:
    if not (isinstance(found, dict) and isinstance(found.get("state"), dict)
            and isinstance(found.get("param_groups"), list)):
        raise CorruptModelError(f"{member} is not an optimizer state")
    for index, state in found["state"].items():
        if not (isinstance(index, int) and 0 <= index < len(params) and isinstance(state, dict)):
            raise CorruptModelError(f"{member} holds state of an unknown parameter {str(index)[:20]!r}")
        for key, value in state.items():  # per-parameter tensors (Adam's exp_avg ...) or a scalar step
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[index].shape:
                raise CorruptModelError(f"{member}: {str(key)[:40]} of parameter {index} has shape {_shape(value)}; "
                                        f"the parameter has {_shape(params[index])}")


def _check_weights_fit(model: Any, params: dict[str, Any]) -> None:
    """Refuse weights that do not fit the model the file describes, before its real tensors exist.

    The model is first built on torch's meta device (shapes, no memory); the file's tensors must
    have exactly its parameters' names and shapes, so the sizes written in ``data`` (core and network
    widths) cannot make the loader allocate more than the tensors the file holds. The core state for
    ``n_envs`` envs, the one other tensor sized by the file, is held to the member size limit.
    """
    saved = dict(model.__dict__)
    try:
        model.device = torch.device("meta")
        with torch.device("meta"):
            model._setup_model()  # the rollout buffer is numpy: zero pages, touched only by training
        expected = model.policy.state_dict()
        ordered = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
        state_bytes = sum(t.numel() * t.element_size() for t in model._last_core_state)
    except MemoryError:
        raise ModelTooLargeError(f"the rollout buffer of n_steps={model.n_steps}, n_envs={model.n_envs} does not "
                                 f"fit in memory") from None
    finally:
        model.__dict__.clear()
        model.__dict__.update(saved)
    _check_state_dict(params["policy"], expected, "policy.pth")
    _check_optimizer_state(params["policy.optimizer"], ordered, "policy.optimizer.pth")
    if state_bytes > max_member_bytes():
        raise ModelTooLargeError(f"the core state of n_envs={model.n_envs} envs needs {state_bytes / 2**20:.3g} MB, "
                                 f"above the limit of {max_member_bytes() / 2**20:.3g} MB")


def load_model(cls: type, path: str | os.PathLike | io.BufferedIOBase, env: Any = None,
               device: torch.device | str = "auto", custom_objects: dict[str, Any] | None = None,
               expected_spaces: tuple[spaces.Space, spaces.Space] | None = None, **kwargs: Any) -> Any:
    """Load a ``cls`` (RecurrentPPO) from a model zip without unpickling anything (see module doc).

    Spaces come from the file, else (a legacy file) from ``env`` or ``custom_objects``; with an env
    its spaces must match the file's. ``expected_spaces`` (observation, action: those of the env the
    model will run on, images channel-last or first) are checked the same way when no env is passed. Declared shapes are checked
    before anything is allocated, and the weights must fit the model exactly. ``kwargs`` set
    attributes after loading, as in SB3. No observation is stored, so training a loaded model starts
    from a reset env (SB3's ``force_reset``).
    Raises UnsafeModelError, CorruptModelError or ModelTooLargeError (ValueErrors) for a file refused.
    """
    with open_model_zip(path) as archive:
        raw = _json_data(archive)
        if env is not None:
            verbose = raw.get("verbose", 0)
            env = cls._wrap_env(env, verbose if isinstance(verbose, int) else 0)
            expected_spaces = (env.observation_space, env.action_space)
        expected = dict(zip(SPACE_FIELDS, map(policy_view, expected_spaces))) if expected_spaces else None
        data = parse_data(raw, cls.policy_aliases, custom_objects, expected)
        if data["policy_class"] is None:
            raise UnsafeModelError("the policy class is stored only as a pickle: refused, nothing was unpickled; "
                                   f"pass custom_objects={{'policy_class': ...}} (one of {', '.join(cls.policy_aliases)})")
        if env is not None:
            for name in SPACE_FIELDS:
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
        params = {name: _read_tensors(archive, f"{name}.pth") for name in STATE_DICTS}
    model = cls(policy=data.pop("policy_class"), env=env, device=device, _init_setup_model=False)
    model.__dict__.update(data)
    model.__dict__.update(kwargs)
    _check_weights_fit(model, params)
    model._setup_model()
    if "_rollouts" in data:  # _setup_model starts the count at 0
        model._rollouts = data["_rollouts"]
    model.set_parameters(params, exact_match=True, device=device)
    return model
