"""rims_rl: a fast PyTorch core of Recurrent Independent Mechanisms (Goyal et al., arXiv 1909.10893).

    from rims_rl import RIMs, RIMsConfig
    core = RIMs(input_size=256, config=RIMsConfig(num_units=6, k=4, unit_size=64, cell="lstm"))
    out, state, info = core(x, core.initial_state(batch_size), episode_starts)
"""
from .config import RIMsConfig
from .rims import RIMs, RIMsInfo

__all__ = ["RIMs", "RIMsConfig", "RIMsInfo"]
