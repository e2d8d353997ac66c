"""Experiment configs: presets, YAML files and type-checked ``key=value`` overrides.

A config is a nested dict with the schema of ``agents/experiments/presets/minigrid.yaml``. A preset is named
by its file stem (``atari``, ``minigrid``, ``demo``); a user YAML file is read as overrides on top
of the preset named by its ``base:`` key (default ``minigrid``), so it may hold only the keys it
changes. Every override is checked against the preset: unknown keys and values of the wrong type
raise :class:`UserError` with one line naming the key and the valid choices.
"""
from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from agents.experiments.fields import check_record
from agents.experiments.files import atomic_write_text
from rims_rl.errors import UserError, first_line

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "minigrid"
# Top-level keys every run's config.yaml has had; a key added to the presets later is not required
# here, so older run dirs stay readable.
RUN_CONFIG_KEYS = ("env", "core", "seed", "policy", "timesteps", "n_envs", "threads", "shifts", "checkpoint_freq",
                   "ppo", "cores", "policy_kwargs", "eval")
# Keys of the sections every run's config.yaml has had (same rule: later additions are not required).
RUN_CONFIG_SECTIONS = {
    "ppo": ("learning_rate", "lr_schedule", "n_steps", "n_minibatches", "n_epochs", "gamma", "gae_lambda",
            "clip_range", "ent_coef", "vf_coef", "max_grad_norm"),
    "eval": ("freq", "episodes", "shifts", "sweep"),
    "cores": (),
    "policy_kwargs": (),
}
# The kinds (agents.experiments.fields) of the keys that readers of a run's config.yaml rely on.
RUN_CONFIG_KINDS = {"env": "text", "core": "text", "seed": "int", "policy": "text", "timesteps": "int",
                    "n_envs": "int", "threads": "int", "checkpoint_freq": "int"}
RUN_CONFIG_OPTIONAL_KINDS = {"label": "text?", "match": "text?", "core_parameters": "int?"}  # added later
RUN_CONFIG_SECTION_KINDS = {"ppo": {"n_steps": "int"}, "eval": {"freq": "int", "episodes": "int"}}
OPEN_SECTIONS = ("policy_kwargs",)  # sections whose keys are not in the preset (checked by validation.validate_config)
DEFAULT_EPISODES = 400  # evaluation episodes per setting: a success rate's 95% CI half-width <= 0.05
EVAL_ENVS = 64  # sub-envs an evaluation steps at once (one batched predict per step); benchmarks/bench_eval.py
# reset seed of an evaluation's episode 0: above the training envs' seeds (run seed + env index) of runs seeded
# below 1000 - n_envs; a tuning run (seeds from 1000) trains on some of the evaluation's reset seeds
EVAL_SEED = 1000


def list_presets() -> list[str]:
    """Names of the built-in presets (file stems in ``agents/experiments/presets``), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """The YAML document in ``path`` (None when empty); UserError naming ``what`` ("config", "grid file")
    if the file cannot be read, is not UTF-8 text, is not valid YAML, or its aliases expand it far beyond
    its text (:func:`check_alias_expansion`)."""
    try:
        with open(path) as f:
            text = f.read()
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            check_alias_expansion(node, len(text), f"{what} {path}")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise UserError(f"{what} {path} is not valid YAML: {first_line(e)}") from None


def check_alias_expansion(root: yaml.Node, text_size: int, where: str) -> None:
    """UserError if the YAML node graph ``root`` holds more than ``1000 + 10 * text_size`` values once its
    aliases are expanded, or an alias inside its own anchor.

    Aliases share one object per anchor, so reading is cheap, but whatever walks the values later (an
    error message quoting them, a copy, a flatten) walks the expansion: a 700-byte file of nested aliases
    is ``9**9`` values. The count is made on the node graph, each node once, without expanding anything.
    """
    limit = 1000 + 10 * text_size
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _yaml_children(node)
        if children_done:
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if id(node) in sizes:
            continue
        if id(node) in entered:
            raise UserError(f"{where}: an alias refers to the value that holds it (a loop); write the value out")
        entered.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    if sizes[id(root)] > limit:
        raise UserError(f"{where}: its aliases expand {text_size} characters to over {limit} values; write the "
                        f"values out or use fewer nested aliases")


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _read_mapping(path: Path) -> dict:
    """A config file's keys (an empty file has none); UserError unless it holds a mapping."""
    data = read_yaml(path, "config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping of keys to values, got {type(data).__name__}")
    return data


def load_preset(name: str, _chain: tuple[str, ...] = ()) -> dict:
    """The built-in preset ``name`` as a nested dict (raises UserError for an unknown name).

    A preset with a ``base:`` key is read as overrides on that preset (a loop of bases is a UserError).
    """
    if not isinstance(name, str) or name not in list_presets():
        raise UserError(
            f"unknown preset {name!r}; valid presets: {', '.join(list_presets())} (or a path to a .yaml file)"
        )
    if name in _chain:
        raise UserError(f"preset {name!r}: its base: chain loops ({' -> '.join((*_chain, name))})")
    path = PRESET_DIR / f"{name}.yaml"
    data = _read_mapping(path)
    if "base" not in data:
        return data
    return _merge_onto_base(data, source=str(path), _chain=(*_chain, name))


def _merge_onto_base(data: dict, source: str, _chain: tuple[str, ...] = ()) -> dict:
    """Apply the keys of ``data`` (type-checked) to the preset named by its ``base`` key."""
    data = dict(data)
    base = data.pop("base", DEFAULT_PRESET)
    if not isinstance(base, str) or base not in list_presets():
        raise UserError(f"{source}: base: {base!r} is not a preset; valid presets: {', '.join(list_presets())}")
    cfg = load_preset(base, _chain)
    for key, value in flatten(data):
        set_value(cfg, key, value, source=source)
    return cfg


def load_config(name_or_path: str | os.PathLike | None = None) -> dict:
    """Resolve ``--config``: a preset name, or a YAML file of overrides on its ``base`` preset.

    ``None`` gives the default preset. A file's keys are checked like ``--set`` overrides.
    """
    if name_or_path is None:
        return load_preset(DEFAULT_PRESET)
    text = str(name_or_path)
    is_file = text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file()
    if not is_file:
        return load_preset(text)
    path = Path(text)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    return _merge_onto_base(_read_mapping(path), source=str(path))


def flatten(data: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Yield ``("a.b.c", value)`` for every leaf of a nested dict (empty dicts are leaves)."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, full + ".")
        else:
            yield full, value


def _parse_scalar(text: str) -> Any:
    """Parse the value part of ``key=value`` as YAML (``1e-3``, ``true``, ``[1, 2]``, ``null``)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


@lru_cache(maxsize=1)
def optional_keys() -> frozenset[str]:
    """Keys that are ``null`` in some built-in preset (``ppo.bptt_length``, ``ppo.clip_range_vf``, ...):
    ``null`` is a valid value for them whatever the current preset holds."""
    files = (_read_mapping(PRESET_DIR / f"{name}.yaml") for name in list_presets())  # as written: no base merging
    return frozenset(key for data in files for key, value in flatten(data) if value is None)


def _coerce(key: str, value: Any, current: Any, raw: str | None, source: str) -> Any:
    """Return ``value`` converted to the type of ``current`` or raise UserError."""
    shown = raw if raw is not None else repr(value)

    def bad(expected: str) -> UserError:
        return UserError(f"{source}: {key} expects {expected}, got {shown!r}")

    if value is None and key in optional_keys():
        return None
    if current is None:  # an optional value: anything scalar or a list
        if isinstance(value, dict):
            raise bad("a scalar or a list")
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad("an integer")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if isinstance(current, str):
        if isinstance(value, str):
            return value
        if raw is not None and not isinstance(value, (dict, list)) and value is not None:
            return raw.strip()  # e.g. a name that happens to look like a number
        raise bad("a string")
    if isinstance(current, list):
        if isinstance(value, list):
            return value
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return [value]
        raise bad("a list")
    raise bad(type(current).__name__)


def set_value(cfg: dict, key: str, value: Any, raw: str | None = None, source: str = "--set") -> None:
    """Set the nested ``key`` ("ppo.learning_rate") in ``cfg`` in place, type-checked.

    The key must exist in ``cfg``; an empty mapping in the preset and the ``OPEN_SECTIONS``
    (``policy_kwargs``) accept any sub-key. ``raw`` is the text the user typed, for messages.
    """
    parts = key.split(".")
    node = cfg
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if not isinstance(node, dict):
            raise UserError(f"{source}: {where} is a value, not a section; cannot set {key}")
        last = depth == len(parts) - 1
        if part not in node:
            if depth > 0 and (node == {} or where.split(".")[0] in OPEN_SECTIONS):  # any key (validated later)
                if last:
                    node[part] = value
                    return
                node[part] = {}
                node = node[part]
                continue
            valid = ", ".join(sorted(node)) or "(none)"
            scope = f" in {where}" if where else ""
            raise UserError(f"{source}: unknown config key {key!r}; valid keys{scope}: {valid}")
        if last:
            current = node[part]
            if isinstance(current, dict) and current:
                valid = ", ".join(sorted(current))
                raise UserError(f"{source}: {key} is a section; set one of its keys: {valid}")
            if isinstance(current, dict):
                if not isinstance(value, dict):
                    raise UserError(f"{source}: {key} expects a mapping, got {raw if raw is not None else value!r}")
                node[part] = value
                return
            node[part] = _coerce(key, value, current, raw, source)
            return
        node = node[part]


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``cfg`` with each ``key=value`` of ``overrides`` applied (type-checked)."""
    out = copy.deepcopy(cfg)
    for item in overrides or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        set_value(out, key, _parse_scalar(raw), raw=raw)
    return out


def get_value(cfg: dict, key: str) -> Any:
    """The value at the nested ``key`` ("eval.episodes") of ``cfg``."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def dump_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML to ``path`` atomically (keys in the preset's order)."""
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False))


def read_config_file(path: str | os.PathLike) -> dict:
    """Read a resolved ``config.yaml`` of a run dir as it was written (no preset merging).

    UserError if it is empty, unreadable, lacks one of ``RUN_CONFIG_KEYS`` or of the section keys
    ``RUN_CONFIG_SECTIONS`` (a cut-off or damaged write), a section is not a mapping, or a key that
    compare, report and resume read holds a value of the wrong type (``RUN_CONFIG_KINDS``: a string
    seed, say); the message names the file and the key.
    """
    cfg = _read_mapping(Path(path))
    if not cfg:
        raise UserError(f"config {path} is empty; the run dir is damaged (restore config.yaml or remove the dir)")
    missing = [key for key in RUN_CONFIG_KEYS if key not in cfg]
    for section, keys in RUN_CONFIG_SECTIONS.items():
        if section in cfg and not isinstance(cfg[section], dict):
            missing.append(f"{section} (not a mapping)")
        elif isinstance(cfg.get(section), dict):
            missing += [f"{section}.{key}" for key in keys if key not in cfg[section]]
    if missing:
        raise UserError(f"config {path} lacks key(s) {', '.join(missing)}; the run dir is damaged "
                        f"(restore config.yaml or remove the dir)")
    damaged = "the run dir is damaged (restore config.yaml or remove the dir)"
    check_record(cfg, "", path, damaged, RUN_CONFIG_KINDS, RUN_CONFIG_OPTIONAL_KINDS)
    for section, kinds in RUN_CONFIG_SECTION_KINDS.items():
        check_record(cfg[section], section, path, damaged, kinds)
    return cfg
