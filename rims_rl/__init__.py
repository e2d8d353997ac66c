"""rims_rl: a fast PyTorch core of Recurrent Independent Mechanisms (Goyal et al., arXiv 1909.10893).

    from rims_rl import RIMs, RIMsConfig
    core = RIMs(input_size=256, config=RIMsConfig(num_units=6, k=4, unit_size=64, cell="lstm"))
    out, state, info = core(x, core.initial_state(batch_size), episode_starts)

``RIMs`` and ``RIMsInfo`` are imported on first use (PEP 562): checking a ``RIMsConfig`` does not
import torch.
"""
from __future__ import annotations

from typing import Any

from .config import RIMsConfig

__all__ = ["RIMs", "RIMsConfig", "RIMsInfo"]


def __getattr__(name: str) -> Any:
    """``RIMs`` and ``RIMsInfo`` from ``rims_rl.rims``, imported on first use."""
    if name in ("RIMs", "RIMsInfo"):
        from . import rims

        value = getattr(rims, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rims_rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
