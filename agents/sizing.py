"""The size of a recurrent core: its trainable parameters, and the LSTM/GRU width that matches a target.

A fair comparison of cores holds their capacity equal. By state (``match: state``) an LSTM gets as many
units as RIMs has in all (K x H); by parameters (``match: params``) it gets the width whose trainable
core parameters come closest to those of the RIMs core of the same config (within 5% is the goal).
"""
from __future__ import annotations

import math

from torch import nn

GATES = {"lstm": 4, "gru": 3}  # gate blocks of torch.nn.LSTM / nn.GRU


def trainable_parameters(module: nn.Module) -> int:
    """The number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def core_parameters(policy: nn.Module) -> int:
    """The trainable parameters of the recurrent core of a recurrent actor-critic ``policy`` (0 for ``none``)."""
    return trainable_parameters(policy.features_extractor.core)


def rnn_parameters(cell: str, input_size: int, hidden_size: int) -> int:
    """Trainable parameters of one ``torch.nn.LSTM``/``GRU`` layer: ``G * (H*I + H*H + 2H)`` (two bias vectors)."""
    return GATES[cell] * (hidden_size * input_size + hidden_size * hidden_size + 2 * hidden_size)


def matched_hidden_size(cell: str, input_size: int, target: int) -> int:
    """The hidden size whose :func:`rnn_parameters` is closest to ``target`` (at least 1)."""
    gates = GATES[cell]
    b = input_size + 2  # G * (H^2 + (I + 2) H) = target
    root = (-b + math.sqrt(b * b + 4 * target / gates)) / 2
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(candidates, key=lambda h: (abs(rnn_parameters(cell, input_size, h) - target), h))
