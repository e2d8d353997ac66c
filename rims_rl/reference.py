"""The readable specification of a RIMs sequence: one step after another, reset where an episode starts.

Goyal et al., "Recurrent Independent Mechanisms", arXiv 1909.10893 (v6), §2.2-2.4. Equation numbers in
the comments are the paper's:

- (1) attention: ``softmax(Q K^T / sqrt(d)) V``;
- (2) input attention: RIM k's query ``h_k W_q^(k)`` against the keys of the input rows and a null row,
  its read ``A_k^(in)``; the top-k RIMs by attention on the real rows form the active set S_t (§2.2);
- (3) independent dynamics: active RIMs update their own LSTM/GRU with their read, ``h~_k =
  LSTM_k(h_k, A_k^(in))``, inactive ones keep their state, ``h_{t+1,k} = h_{t,k}`` (§2.3);
- (4) communication: active RIMs read from all RIMs' tentative states, ``h_{t+1,k} = softmax(Q_k K^T /
  sqrt(d)) V + h~_k`` (§2.4; gated as in the authors' code, see ``attention.Communication``).

This module is also a backend: the one that covers every configuration and is differentiable twice
(``RIMs.backend = "reference"``). The fast backends compute the same arithmetic and are held to this one
by ``tests/test_core_backends.py``: ``fused.py`` (a whole step as one autograd node, in the common
training configuration) and ``kernel.py`` with ``csrc/sequence.cpp`` (the whole sequence compiled).

Layout: per-RIM tensors are unit-major, ``[K, B, ...]``, so every per-RIM product is one batched
product with weights ``[K, in, out]`` (``group.py``); the caller's tensors are ``[B, K, H]``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from torch import Tensor

from .attention import top_k_mask
from .group import StepProduct

if TYPE_CHECKING:
    from .rims import RIMs

State = tuple[Tensor, ...]


class StepInputs(NamedTuple):
    """The precomputed inputs of one step (None where the configuration has none)."""

    keys: Tensor | None  # [B, R, heads, key], pre-scaled by 1/sqrt(key)
    values: Tensor | None  # [B, R, heads, value], or folded: [K, B, heads, G]
    input_gates: Tensor | None  # without input attention: [K, B, G]


class Sequence(NamedTuple):
    """Per-sequence tensors computed once by :func:`prepare` (tuples hold one tensor per step)."""

    state_product: StepProduct  # h [K, B, H] -> [K, B, G (+ heads*key)]: hidden-to-gates (| queries)
    keys: tuple[Tensor, ...] | None
    values: tuple[Tensor, ...] | None
    folded: bool  # values hold input-to-gate pre-activations (one input row, see prepare)
    input_gates: tuple[Tensor, ...] | None
    b_in: Tensor | None  # [K, 1, G] input bias, None when already inside the state product's bias
    comm_products: tuple[StepProduct, StepProduct] | None  # Communication.step_products()

    def step_inputs(self, t: int) -> StepInputs:
        """The inputs of step t."""
        pick = (lambda xs: None if xs is None else xs[t])
        return StepInputs(pick(self.keys), pick(self.values), pick(self.input_gates))


class StepOutput(NamedTuple):
    """One step's new state and diagnostics (per-RIM tensors unit-major)."""

    state: State  # [K, B, H] each
    mask: Tensor | None  # [K, B] bool, the active RIMs; None: all active
    probs: Tensor | None  # attention on the rows [K, B, heads, R]; None without input attention
    comm_attention: Tensor | None  # [K(query), K(key), B, heads]; None without communication


class SequenceResult(NamedTuple):
    """What every backend returns for a sequence (``RIMs.forward`` turns the last three into ``RIMsInfo``)."""

    out: Tensor  # [T, B, K*H]
    final: State  # [B, K, H] each
    masks: Tensor | None  # [T, K, B]; None: all active
    probs: Tensor | None  # [T, K, B, heads, R]
    comm_attention: Tensor | None  # [T, K(query), K(key), B, heads]


Step = Callable[["RIMs", State, StepInputs, Sequence, bool], StepOutput]


def prepare(core: RIMs, x: Tensor, fold: bool) -> Sequence:
    """Everything that does not depend on the recurrent state, for all T steps at once. x [T, B, R, D].

    ``fold`` (one input row only): the read of one row is ``p * v``, so its input-to-gate product
    ``p * (v W_ih)`` is computed as ``v W_ih`` for all steps here and scaled by ``p`` in the step; the
    same values as reading first, rounded differently.
    """
    T, B, R, _ = x.shape
    cell, attn, comm = core.cell, core.input_attention, core.communication
    K, G = core.config.num_units, cell.gate_size
    comm_products = comm.step_products() if comm is not None else None
    if attn is None:  # ablation input_attention=False: every RIM reads all rows, concatenated
        gates = torch.matmul(x.reshape(T * B, R * core.input_size), cell.input_to_gates.weight)
        gates = (gates + cell.input_to_gates.bias).view(K, T, B, G)
        return Sequence(StepProduct(cell.hidden_to_gates.weight, cell.hidden_to_gates.bias), None, None, False,
                        gates.unbind(1), None, comm_products)
    # (2) keys and values of the input rows, shared by all RIMs, without bias: the null row (implicit)
    # has key and value exactly 0. The row embedding keeps an all-zero row from looking like it.
    keys, values = attn.project(x + core.row_embedding)  # [T, B, R, heads, *]
    # One per-RIM product of the state for both the hidden-to-gate pre-activations (3) and the queries (2).
    w_state = torch.cat([cell.hidden_to_gates.weight, attn.query.weight], dim=-1)
    b_gates = cell.hidden_to_gates.bias
    folded = fold and R == 1
    sum_gates = folded and core.config.cell == "lstm"
    if sum_gates:  # LSTM: the input bias joins the hidden bias, the input part is added in one fused op
        b_gates = b_gates + cell.input_to_gates.bias
    b_state = torch.cat([b_gates, b_gates.new_zeros(K, 1, attn.query.out_features)], dim=-1)
    # Per-step tensors via unbind: its backward stacks all step gradients at once (indexing [t]
    # would make every step's backward allocate and fill a full [T, ...] gradient).
    if folded:
        # Input-to-gate pre-activations of every head's value for all steps: T x [K, B, heads, G].
        # One broadcast [T*B, heads*value] x [K, heads*value, G] product per head (faster than einsum).
        heads, dv = attn.num_heads, attn.value_size
        w_in = cell.input_to_gates.weight.view(K, heads, dv, G).transpose(0, 1)  # [heads, K, dv, G]
        v = values.reshape(T * B, heads, dv).transpose(0, 1).unsqueeze(1)  # [heads, 1, T*B, dv]
        step_values = torch.matmul(v, w_in).view(heads, K, T, B, G).permute(2, 1, 3, 0, 4)
    else:
        step_values = values
    b_in = None if sum_gates else cell.input_to_gates.bias
    return Sequence(StepProduct(w_state, b_state), keys.unbind(0), step_values.unbind(0), folded, None, b_in,
                    comm_products)


def step(core: RIMs, state: State, inputs: StepInputs, seq: Sequence, block: bool) -> StepOutput:
    """One RIMs step on unit-major states [K, B, H] ((h, c) for lstm, (h,) for gru).

    ``block``: no gradient enters an inactive RIM's tentative update (``block_inactive_grad`` with
    k < K and gradients on).
    """
    cfg, cell, attn, comm = core.config, core.cell, core.input_attention, core.communication
    K, B, _ = state[0].shape
    G = cell.gate_size
    h_prev = state[0]
    hq = seq.state_product(h_prev)
    mask = active = probs_info = None
    if attn is None:  # every RIM active, reading the whole input
        gates_x, gates_h = inputs.input_gates, hq
    else:
        gates_h, query = hq.split([G, hq.shape[-1] - G], dim=-1)
        # (2) scores q_k K^T / sqrt(d) against [null, rows]; the null row's score is 0 (its key is 0)
        scores = attn.scores(query, inputs.keys)
        probs, logits = attn.probabilities(scores)
        probs_info = probs
        if cfg.k < K:
            # §2.2: S_t = the k RIMs with the most attention on the real rows (least on the null row).
            # A hard top-k on logits that rank like that attention, ties to the lower index.
            mask = top_k_mask(logits, cfg.k)
            active = mask.unsqueeze(-1)
            if cfg.selection == "across":  # authors' Atari code: inactive RIMs read nothing
                probs = attn.masked_probabilities(scores, mask, cfg.across_renormalise)
        probs = attn.dropout(probs)
        gates_x, gates_h = _input_gates(core, probs, inputs.values, gates_h, seq)
    # (3) every RIM's own cell; the update of inactive RIMs is tentative (discarded below)
    new = cell(gates_x, gates_h, state)
    h_new = new[0]
    if block:  # no gradient into an inactive RIM's tentative update (incl. via communication)
        h_new = torch.where(active, h_new, h_new.detach())
    comm_attention = None
    if comm is not None:
        # (4) queries, keys and values from the tentative states; every RIM's read added back (a gated
        # residual); inactive RIMs' results are discarded below. comm_inactive="kept" (the paper's
        # reading): inactive RIMs offer keys and values of the state they keep.
        source = None
        if cfg.comm_inactive == "kept" and active is not None:
            source = torch.where(active, h_new, h_prev)
        h_new, comm_attention = comm(h_new, seq.comm_products, source)
    new = (h_new,) + tuple(new[1:])
    if active is not None:  # (3) inactive RIMs keep their state bit-for-bit
        new = tuple(torch.where(active, n, s) for n, s in zip(new, state))
    return StepOutput(new, mask, probs_info, comm_attention)


def _input_gates(core: RIMs, probs: Tensor, values: Tensor, gates_h: Tensor,
                 seq: Sequence) -> tuple[Tensor, Tensor | None]:
    """(2)-(3): the input-to-gate pre-activations of every RIM's read ``A_k = sum_r p_r v_r``, and the
    hidden ones (None when the first already holds their sum). probs [K, B, heads, R]."""
    cell, attn = core.cell, core.input_attention
    K, B = probs.shape[:2]
    G = cell.gate_size
    if not seq.folded:
        return cell.input_to_gates(attn.read(probs, values)), gates_h
    # One row: read W_ih = p * (v W_ih), with v W_ih precomputed. LSTM (b_in None): added straight onto
    # the hidden gates; GRU: the two parts stay apart (its new gate uses them separately).
    base = gates_h if seq.b_in is None else seq.b_in
    if attn.num_heads == 1:
        gates_x = torch.addcmul(base, probs.view(K, B, 1), values.view(K, B, G))
    else:
        gates_x = torch.matmul(probs.view(K, B, 1, -1), values).view(K, B, G) + base
    return gates_x, (None if seq.b_in is None else gates_h)


def run(core: RIMs, seq: Sequence, state: State, initial: list[Tensor], resets: list[bool],
        starts: Tensor | None, step_fn: Step = step) -> SequenceResult:
    """T steps of ``step_fn`` from ``state`` (unit-major [K, B, H]). Before step t, the samples where an
    episode starts get the initial state (``initial``: [K, 1, H] each; ``starts`` [T, 1, B, 1] bools,
    ``resets[t]``: whether any sample starts at t)."""
    cfg = core.config
    K = cfg.num_units
    block = cfg.block_inactive_grad and K > cfg.k and torch.is_grad_enabled()
    outs, masks, probs_all, comm_all = [], [], [], []
    for t, reset in enumerate(resets):
        if reset:  # where, not a product: the old state may hold NaN or inf (NaN * 0 = NaN)
            state = tuple(torch.where(starts[t], s0, s) for s, s0 in zip(state, initial))
        state, mask, probs, comm_attention = step_fn(core, state, seq.step_inputs(t), seq, block)
        outs.append(state[0])
        if mask is not None:
            masks.append(mask)
        if probs is not None:
            probs_all.append(probs)
        if comm_attention is not None:
            comm_all.append(comm_attention)
    T, (_, B, H) = len(resets), state[0].shape
    out = torch.stack(outs).permute(0, 2, 1, 3).reshape(T, B, K * H)
    stack = (lambda xs: torch.stack(xs) if xs else None)
    return SequenceResult(out, tuple(s.transpose(0, 1) for s in state), stack(masks), stack(probs_all),
                          stack(comm_all))
