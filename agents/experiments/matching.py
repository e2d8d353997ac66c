"""Capacity matching: the width of an lstm/gru run set from the RIMs core it is compared with.

A config's ``match`` key sizes the ``lstm`` and ``gru`` cores (other cores ignore it):

- ``none``: ``cores.<core>.hidden_size`` as given;
- ``state``: as many units as the RIMs core has in all, ``cores.rims.num_units * cores.rims.unit_size``;
- ``params``: the width whose trainable core parameters (``agents.sizing``) come closest to those of
  the reference RIMs core: the RIMs variant of the same grid job where there is one (its policy
  options, e.g. input rows, included), else this config with ``core: rims``. The result is within 5%
  wherever the width is not tiny (tested).

Matching by parameters builds the reference policy to count it, so it imports torch; configs without
``match: params`` never do.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Sequence

from agents.experiments.validation import run_config
from rims_rl.errors import UserError

MATCHED_CORES = ("lstm", "gru")
RIMS_ONLY_POLICY_KWARGS = ("input_rows", "instruction_row")


def matched_config(cfg: dict, reference: dict | None = None) -> dict:
    """``cfg`` with ``cores.<core>.hidden_size`` set by its ``match`` (a copy; ``cfg`` itself when nothing
    changes). ``reference``: the config of the RIMs core to match (default: ``cfg`` with ``core: rims``)."""
    match, core = cfg.get("match", "none"), cfg["core"]
    if match == "none" or core not in MATCHED_CORES:
        return cfg
    rims = (reference or cfg)["cores"]["rims"]
    if match == "state":
        hidden = int(rims["num_units"]) * int(rims["unit_size"])
    else:
        target = rims_core_parameters(_probe_key(reference if reference is not None else
                                                 {**cfg, "core": "rims"}))
        hidden = _matched_width(_probe_key({**cfg, "cores": {**cfg["cores"], core: {"hidden_size": 1}}}), target)
    out = copy.deepcopy(cfg)
    out["cores"][core] = {**out["cores"][core], "hidden_size": hidden}
    return out


def run_configs(base: dict, cores: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """The config of every (core, seed) run of ``base`` (None: the config's own core / seed; a repeated core or
    seed: one run), each with its label and matched size (:func:`matched_config`).

    A label names one variant: with several cores, ``base`` must not set one (UserError)."""
    cores = list(dict.fromkeys(cores or [base["core"]]))
    if base.get("label") is not None and len(cores) > 1:
        raise UserError(f"--label {base['label']} names one variant; give one --core with it, got {', '.join(cores)}")
    seeds = list(dict.fromkeys(seeds if seeds is not None else [base["seed"]]))
    return [matched_config(run_config(base, core, seed)) for core in cores for seed in seeds]


def _probe_key(cfg: dict) -> str:
    """What decides a core's size, as a hashable text: env, observation options, policy, core and its options."""
    keys = ("env", "instructions", "policy", "core", "cores", "policy_kwargs")
    return json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True)


def _build_policy(key: str):
    """The policy a config (:func:`_probe_key`) builds, on a one-env probe of its env (CPU, no training)."""
    from agents.experiments.train import build_policy_for

    return build_policy_for(json.loads(key))


@lru_cache(maxsize=64)
def rims_core_parameters(key: str) -> int:
    """The trainable parameters of the RIMs core that the config ``key`` builds."""
    from agents.sizing import core_parameters

    return core_parameters(_build_policy(key))


@lru_cache(maxsize=64)
def _matched_width(key: str, target: int) -> int:
    """The lstm/gru width of config ``key`` whose core parameters are closest to ``target``."""
    from agents.sizing import matched_hidden_size

    cfg = json.loads(key)
    input_size = _build_policy(key).features_extractor.core.rnn.input_size
    return matched_hidden_size(cfg["core"], input_size, target)
