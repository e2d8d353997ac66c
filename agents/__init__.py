"""Recurrent PPO on Stable-Baselines3 with a pluggable core: rims, lstm, gru or none (feed-forward)."""
from agents.cores import CORES, make_core
from agents.policies import (
    CnnPolicy,
    MlpPolicy,
    RecurrentActorCriticPolicy,
    RecurrentFeaturesExtractor,
    RIMsFeaturesExtractor,
)
from agents.ppo import RecurrentPPO

__all__ = [
    "CORES",
    "CnnPolicy",
    "MlpPolicy",
    "RIMsFeaturesExtractor",
    "RecurrentActorCriticPolicy",
    "RecurrentFeaturesExtractor",
    "RecurrentPPO",
    "make_core",
]
