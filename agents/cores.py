"""Recurrent cores behind one call: ``out, state, info = core(x, state, episode_starts)``.

Every core maps a time-major input ``x`` of shape ``[T, B, D]`` (or ``[T, B, R, D]`` for RIMs with
input rows) to ``out`` of shape ``[T, B, core.output_size]``. ``state`` is a tuple of tensors whose
first dimension is the batch ``B`` (``()`` for the feed-forward core); ``episode_starts [T, B]`` is
1 where a new episode begins, and the state is reset to ``core.initial_state`` before that step.
``info`` is the RIMs info (``mask [T, B, K]`` ...) for ``rims`` and ``None`` for the other cores.
``need_state=False`` tells a core that the caller drops the final state (PPO updates), which lets the
LSTM core pick a faster layout.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from agents.checks import CORES, check_core_name  # noqa: F401  (CORES: agents.CORES; check_core_name: ppo, policies)
from rims_rl import RIMs, RIMsConfig
from rims_rl.errors import UserError

CoreState = tuple[torch.Tensor, ...]
# The padded layout computes max_length * num_segments steps; use it (LSTM, final state not needed)
# while that is at most this many times the B * T real steps (measured break-even: 3.5-4x).
PADDED_WORK_LIMIT = 3.5


class Core(nn.Module):
    """Base class of the cores: ``forward(x, state, episode_starts) -> (out, state, info)``."""

    output_size: int

    def initial_state(self, batch_size: int) -> CoreState:
        """State of a fresh episode: a tuple of ``[batch_size, ...]`` tensors."""
        raise NotImplementedError


class FeedForwardCore(Core):
    """The ``none`` core: out = x, no state (a plain feed-forward PPO)."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.output_size = input_size

    def initial_state(self, batch_size: int) -> CoreState:
        return ()

    def forward(self, x: torch.Tensor, state: CoreState, episode_starts: torch.Tensor, need_state: bool = True):
        return x, (), None


class TorchRNNCore(Core):
    """The ``lstm`` / ``gru`` cores: one ``torch.nn.LSTM`` / ``nn.GRU`` layer of ``hidden_size`` units.

    State: ``(h, c)`` each ``[B, H]`` (LSTM) or ``(h,)`` (GRU); zeros at episode starts.
    A sequence with episode starts inside it is split at those points into segments that all run in
    one call of the torch RNN (no Python loop over time): a packed call (exact final state), or, for
    the LSTM when the final state is not needed and padding wastes little, one unpacked call over the
    zero-padded segments, which uses torch's faster CPU LSTM kernel.
    """

    def __init__(self, input_size: int, cell: str = "lstm", hidden_size: int = 256) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise UserError(f"unknown cell {cell!r}; valid cells: lstm, gru")
        if hidden_size < 1:
            raise UserError(f"hidden_size must be >= 1, got {hidden_size}")
        self.cell = cell
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_class(input_size, hidden_size)
        for name, param in self.rnn.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                nn.init.orthogonal_(param, 1.0)

    def initial_state(self, batch_size: int) -> CoreState:
        device = self.rnn.weight_hh_l0.device
        zeros = torch.zeros(batch_size, self.hidden_size, device=device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else (zeros,)

    def _run(self, x, state: CoreState):
        """Run the torch RNN on x [T, N, D] (or a PackedSequence) from batch-first state."""
        hx = tuple(s.unsqueeze(0).contiguous() for s in state)
        out, hx = self.rnn(x, hx if self.cell == "lstm" else hx[0])
        new_state = tuple(h.squeeze(0) for h in (hx if self.cell == "lstm" else (hx,)))
        return out, new_state

    def forward(
        self, x: torch.Tensor, state: CoreState, episode_starts: torch.Tensor, need_state: bool = True
    ):
        """``need_state=False`` allows a faster layout whose final state is not returned (``()``)."""
        T, B = x.shape[:2]
        keep = (1.0 - episode_starts[0].float()).unsqueeze(-1)
        state = tuple(s * keep for s in state)
        starts_inside = episode_starts[1:].bool()
        if T == 1 or not bool(starts_inside.any()):
            out, state = self._run(x, state)
            return out, state, None
        layout = SegmentLayout(starts_inside.cpu(), x.device)
        padded_work = layout.max_length * layout.num_segments
        if not need_state and self.cell == "lstm" and padded_work <= PADDED_WORK_LIMIT * B * T:
            return self._forward_padded(x, state, layout), (), None
        return self._forward_packed(x, state, layout)

    def _segment_inputs(self, x: torch.Tensor, state: CoreState, layout: "SegmentLayout"):
        """Inputs [L_max, S, D] (zero padded after each segment) and initial states [S, H]."""
        T, B, D = x.shape
        padded = x.new_zeros(layout.max_length, layout.num_segments, D)
        padded[layout.offset, layout.segment] = x.transpose(0, 1).reshape(B * T, D)
        seg_state = tuple(
            s.new_zeros(layout.num_segments, self.hidden_size).index_copy(0, layout.first_segment, s)
            for s in state
        )
        return padded, seg_state

    def _forward_packed(self, x: torch.Tensor, state: CoreState, layout: "SegmentLayout"):
        """All segments in one packed call: exact final states, no wasted compute."""
        T, B, _ = x.shape
        padded, seg_state = self._segment_inputs(x, state, layout)
        packed = pack_padded_sequence(padded, layout.lengths, enforce_sorted=False)
        packed_out, seg_state = self._run(packed, seg_state)
        padded_out, _ = pad_packed_sequence(packed_out)
        out = padded_out[layout.offset, layout.segment].view(B, T, -1).transpose(0, 1)
        return out, tuple(s[layout.last_segment] for s in seg_state), None

    def _forward_padded(self, x: torch.Tensor, state: CoreState, layout: "SegmentLayout") -> torch.Tensor:
        """All segments in one unpacked call over the zero-padded layout (torch's fast CPU LSTM
        kernel); outputs after a segment's end are computed and dropped, so final states are not exact."""
        T, B, _ = x.shape
        padded, seg_state = self._segment_inputs(x, state, layout)
        padded_out, _ = self._run(padded, seg_state)
        return padded_out[layout.offset, layout.segment].view(B, T, -1).transpose(0, 1)


class SegmentLayout:
    """Where the B sequences of length T split into segments at episode starts (env-major order).

    ``segment[i]`` / ``offset[i]``: segment and position in it of sample ``i = b * T + t``;
    ``lengths [S]``; ``first_segment [B]`` / ``last_segment [B]``: segment of t=0 / t=T-1 per env.
    """

    def __init__(self, starts_inside: torch.Tensor, device: torch.device) -> None:
        T1, B = starts_inside.shape
        T = T1 + 1
        begins = torch.ones(B, T, dtype=torch.bool)
        begins[:, 1:] = starts_inside.t()
        flat = begins.reshape(-1).numpy()
        segment = np.cumsum(flat) - 1
        begin_pos = np.flatnonzero(flat)
        lengths = np.diff(np.append(begin_pos, B * T))
        self.num_segments = len(begin_pos)
        self.max_length = int(lengths.max())
        self.lengths = torch.as_tensor(lengths)
        self.segment = torch.as_tensor(segment, device=device)
        self.offset = torch.as_tensor(np.arange(B * T) - begin_pos[segment], device=device)
        self.first_segment = torch.as_tensor(segment[0::T], device=device)
        self.last_segment = torch.as_tensor(segment[T - 1 :: T], device=device)


class RIMsCore(Core):
    """The ``rims`` core: ``rims_rl.RIMs`` (its own reset handling and info), dropout 0 by default."""


    def __init__(self, input_size: int, num_input_rows: int | None = None, **config_fields: Any) -> None:
        super().__init__()
        fields = {"input_dropout": 0.0, "comm_dropout": 0.0}
        fields.update(config_fields)
        valid = {f.name for f in dataclasses.fields(RIMsConfig)}
        unknown = sorted(set(fields) - valid)
        if unknown:
            raise UserError(f"unknown core_kwargs {unknown} for core 'rims'; valid: {', '.join(sorted(valid))}")
        self.rims = RIMs(input_size=input_size, config=RIMsConfig(**fields), num_input_rows=num_input_rows)
        self.output_size = self.rims.output_size

    def initial_state(self, batch_size: int) -> CoreState:
        return tuple(self.rims.initial_state(batch_size=batch_size))

    def forward(self, x: torch.Tensor, state: CoreState, episode_starts: torch.Tensor, need_state: bool = True):
        out, state, info = self.rims(x, state, episode_starts)
        return out, tuple(state), info


def make_core(
    core: str, input_size: int, core_kwargs: Mapping[str, Any] | None = None, num_input_rows: int | None = None
) -> Core:
    """Build the core named ``core`` ("rims" | "lstm" | "gru" | "none") for inputs of ``input_size``.

    ``core_kwargs``: RIMsConfig fields for ``rims``; ``hidden_size`` for ``lstm``/``gru``; nothing for
    ``none``. ``num_input_rows``: R when the input comes as R positional rows ``[T, B, R, D]`` (rims
    only). Unknown names raise UserError.
    """
    check_core_name(core)
    kwargs = dict(core_kwargs or {})
    if core == "rims":
        return RIMsCore(input_size, num_input_rows=num_input_rows, **kwargs)
    if num_input_rows is not None:
        raise UserError(f"input rows need core 'rims', got core {core!r}")
    if core == "none":
        if kwargs:
            raise UserError(f"core 'none' takes no core_kwargs, got {sorted(kwargs)}")
        return FeedForwardCore(input_size)
    unknown = sorted(set(kwargs) - {"hidden_size"})
    if unknown:
        raise UserError(f"unknown core_kwargs {unknown} for core {core!r}; valid: hidden_size")
    return TorchRNNCore(input_size, cell=core, **kwargs)
