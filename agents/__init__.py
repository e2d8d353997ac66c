"""Recurrent PPO on Stable-Baselines3 with a pluggable core: rims, lstm, gru or none (feed-forward).

The public names are imported lazily (PEP 562), so that ``import agents.experiments.config`` (the command line's
argument parsing and its one-line errors) does not pay for importing torch and SB3.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CORES": "agents.cores",
    "make_core": "agents.cores",
    "CnnPolicy": "agents.policies",
    "MlpPolicy": "agents.policies",
    "RecurrentActorCriticPolicy": "agents.policies",
    "RecurrentFeaturesExtractor": "agents.policies",
    "RIMsFeaturesExtractor": "agents.policies",
    "RecurrentPPO": "agents.ppo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
