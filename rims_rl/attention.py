"""Input attention (with the null row and top-k selection) and communication between RIMs.

Layout: per-RIM tensors are unit-major ``[K, B, ...]`` (see ``group.py``); step inputs are ``[B, R, ...]``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .group import GroupLinear, StepProduct


def top_k_mask(logits: Tensor, k: int) -> Tensor:
    """logits [K, B] -> bool mask [K, B] with the k largest per column; ties go to the lower index
    (a stable descending sort), so the mask is a deterministic function of the logits."""
    order = torch.sort(logits, dim=0, descending=True, stable=True).indices[:k]
    return torch.zeros(logits.shape, dtype=torch.bool, device=logits.device).scatter_(0, order, True)


class InputAttention(nn.Module):
    """Keys/values of the input rows (shared by all RIMs) and per-RIM queries of the RIM states.

    The null row is implicit: its key and value are exactly zero (no bias), so its score is 0 and
    it contributes nothing to the read. ``selection="null"``: softmax over ``[null, rows]``, the RIMs
    that put the least attention on the null row are active. ``selection="across"``: no null row,
    softmax across RIMs for each row, the RIMs with the most attention are active.
    """

    def __init__(self, input_size: int, num_units: int, unit_size: int, key_size: int, value_size: int,
                 num_heads: int, selection: str, dropout: float) -> None:
        super().__init__()
        self.key_size, self.value_size, self.num_heads = key_size, value_size, num_heads
        self.selection = selection
        self.key_value = nn.Linear(input_size, num_heads * (key_size + value_size), bias=False)
        self.query = GroupLinear(num_units, unit_size, num_heads * key_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    @property
    def read_size(self) -> int:
        """Size of one RIM's read vector (all heads concatenated)."""
        return self.num_heads * self.value_size

    def project(self, x: Tensor, linear: Callable[[Tensor, Tensor], Tensor] = F.linear) -> tuple[Tensor, Tensor]:
        """x: [T, B, R, D] -> keys [T, B, R, heads, key] (pre-scaled by 1/sqrt(key)), values [T, B, R, heads, value].
        ``linear(x, weight)``: the product to use (e.g. ``rims_rl.matmul.linear``)."""
        kv = linear(x, self.key_value.weight).unflatten(-1, (self.num_heads, self.key_size + self.value_size))
        keys, values = kv.split([self.key_size, self.value_size], dim=-1)
        return keys * (1.0 / math.sqrt(self.key_size)), values

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """query [K, B, heads*key], keys [B, R, heads, key] -> scores [K, B, heads, R] (null row excluded)."""
        K, B, _ = query.shape
        q = query.view(K, B, self.num_heads, self.key_size)
        if keys.shape[1] == 1:
            return (q * keys[:, 0]).sum(-1, keepdim=True)
        return torch.einsum("kbhd,brhd->kbhr", q, keys)

    def probabilities(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """scores [K, B, heads, R] -> (attention on the real rows [K, B, heads, R], selection logits [K, B]).

        A RIM's activity is the attention it puts on the real rows, averaged over heads
        (``1 - attention on the null row`` for ``selection="null"``); the top-k RIMs are active. The
        selection logits are a strictly increasing function of the activity computed from the scores
        in the log domain (the score itself for one row and one head), so the ranking does not suffer
        from probabilities that saturate at 1.0 in floating point.
        """
        if self.selection == "across":
            probs = torch.softmax(scores, dim=0)
        elif scores.shape[-1] == 1:
            probs = torch.sigmoid(scores)  # softmax over [null (score 0), row]
        else:
            probs = torch.softmax(F.pad(scores, (1, 0)), dim=-1)[..., 1:]
        return probs, self.selection_logits(scores)

    def masked_probabilities(self, scores: Tensor, mask: Tensor, renormalise: bool) -> Tensor:
        """``selection="across"``: the attention the RIMs read with, [K, B, heads, R]; inactive RIMs
        (mask [K, B] False) read 0. ``renormalise``: a softmax across the active RIMs only, so each row's
        attention sums to 1 over them (authors' Atari code); else the softmax across all K times the mask."""
        m = mask.view(mask.shape + (1, 1))
        if renormalise:
            return torch.softmax(scores.masked_fill(~m, float("-inf")), dim=0)
        return torch.softmax(scores, dim=0) * m

    def selection_logits(self, scores: Tensor) -> Tensor:
        """scores [K, B, heads, R] -> [K, B], increasing in the activity (see ``probabilities``)."""
        K, B, heads, R = scores.shape
        if heads == 1 and R == 1:
            return scores.reshape(K, B)
        if self.selection == "across":  # log sum_{heads, rows} softmax_K(scores)
            return torch.logsumexp((scores - torch.logsumexp(scores, dim=0, keepdim=True)).flatten(2), dim=-1)
        on_rows = torch.logsumexp(scores, dim=-1)  # [K, B, heads]; activity_h = sigmoid(on_rows_h)
        if heads == 1:
            return on_rows.reshape(K, B)
        return torch.logsumexp(F.logsigmoid(on_rows), dim=-1)

    def read(self, probs: Tensor, values: Tensor) -> Tensor:
        """probs [K, B, heads, R], values [B, R, heads, value] -> read [K, B, heads*value]."""
        K, B = probs.shape[:2]
        return torch.einsum("kbhr,brhd->kbhd", probs, values).reshape(K, B, self.read_size)

    def info_attention(self, probs: Tensor) -> Tensor:
        """Stacked probs [..., heads, R] -> attention incl. the null row [..., R+1], averaged over heads."""
        rows = probs.mean(-2)
        if self.selection == "across":
            null = torch.zeros_like(rows[..., :1])
        else:
            null = 1.0 - rows.sum(-1, keepdim=True)
        return torch.cat([null, rows], dim=-1)


class Communication(nn.Module):
    """Multi-head attention among the RIMs' tentative states, added back through a gated residual.

    ``h + sigmoid(W_g o) * tanh(W_o o)`` where ``o`` is the RIM's read from all RIMs (authors' code).
    """

    def __init__(self, num_units: int, unit_size: int, key_size: int, value_size: int, num_heads: int,
                 dropout: float) -> None:
        super().__init__()
        self.unit_size, self.key_size, self.value_size, self.num_heads = unit_size, key_size, value_size, num_heads
        self.query_key_value = GroupLinear(num_units, unit_size, num_heads * (2 * key_size + value_size), bias=False)
        self.output_gate = GroupLinear(num_units, num_heads * value_size, 2 * unit_size)
        self.dropout = nn.Dropout(dropout)
        column_scale = torch.ones(num_heads, 2 * key_size + value_size)
        column_scale[:, :key_size] = 1.0 / math.sqrt(key_size)  # queries carry the 1/sqrt(key) factor
        self.register_buffer("_column_scale", column_scale.reshape(-1), persistent=False)

    def scaled_weight(self) -> Tensor:
        """The [K, H, heads*(2*key+value)] query/key/value weight with the 1/sqrt(key) score scale folded in."""
        return self.query_key_value.weight * self._column_scale

    def step_products(self) -> tuple[StepProduct, StepProduct]:
        """The per-step (query/key/value, output gate) products of one sequence (see ``StepProduct``)."""
        return (StepProduct(self.scaled_weight()),
                StepProduct(self.output_gate.weight, self.output_gate.bias))

    def forward(self, h: Tensor, products: tuple[StepProduct, StepProduct] | None = None,
                source: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """h [K, B, H] -> (h + gated read [K, B, H], attention [K(query), K(key), B, heads]).

        products: ``step_products()``, made once per sequence by the caller (None: make them here).
        source: the states queries, keys and values are computed from (None: h), e.g. with the kept
        state of inactive RIMs (``comm_inactive="kept"``).
        With K of a few units, scores and reads are broadcast products (no transposed copies).
        """
        K, B, _ = h.shape
        qkv_product, gate_product = self.step_products() if products is None else products
        qkv = qkv_product(h if source is None else source).view(K, B, self.num_heads, -1)
        q, k, v = qkv.split([self.key_size, self.key_size, self.value_size], dim=-1)
        attention = torch.softmax((q.unsqueeze(1) * k).sum(-1), dim=1)  # [Kq, Kk, B, heads]
        read = (self.dropout(attention).unsqueeze(-1) * v).sum(1)  # [Kq, B, heads, value]
        gate, update = gate_product(read.view(K, B, -1)).split(self.unit_size, dim=-1)
        return h + torch.sigmoid(gate) * torch.tanh(update), attention
