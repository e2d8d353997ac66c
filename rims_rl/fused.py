"""The fused backend: one whole RIMs step as a single autograd node with a hand-written backward.

Covers the common training configuration (see ``covers``): input attention with one input row (folded
values), one input head, ``selection="null"``, k < K, communication from the tentative states, no
active dropout, LSTM or GRU cells. The forward runs exactly the ops of ``reference.step`` for that
configuration (identical results); the backward is the chain rule of those ops written out, so a step
records one autograd node instead of about a hundred (at small batch the per-op overhead, not the
arithmetic, dominated). Weight gradients of the per-step products are deferred to
``group._DeferredParams`` (one batched product per sequence). With gradients off (rollouts),
``fused_step`` runs the same forward ops without an autograd node.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .attention import top_k_mask
from .reference import Sequence, State, StepInputs, StepOutput

if TYPE_CHECKING:
    from .rims import RIMs

_sigmoid_backward = torch.ops.aten.sigmoid_backward  # (grad, sigmoid output) -> grad * y * (1 - y)
_tanh_backward = torch.ops.aten.tanh_backward  # (grad, tanh output) -> grad * (1 - y^2)


def covers(core: RIMs, seq: Sequence) -> bool:
    """Whether the fused step runs ``core``'s configuration for the sequence ``seq`` (else the reference
    step does); with gradients on, its per-step products must defer their weight gradients."""
    cfg = core.config
    if not (seq.folded and core.input_attention is not None and core.communication is not None
            and cfg.selection == "null" and cfg.num_input_heads == 1 and cfg.comm_inactive == "tentative"
            and cfg.k < cfg.num_units):
        return False
    if core.training and (cfg.input_dropout > 0 or cfg.comm_dropout > 0):
        return False
    if not torch.is_grad_enabled():
        return True
    return seq.state_product.deferred and all(p.deferred for p in seq.comm_products)


def step(core: RIMs, state: State, inputs: StepInputs, seq: Sequence, block: bool) -> StepOutput:
    """``reference.step`` for a configuration the fused step ``covers``: one autograd node with gradients
    on, the same forward ops without a node otherwise."""
    comm = core.communication
    comm_qkv, comm_out = seq.comm_products
    tensors = (state[0], state[1] if len(state) > 1 else None, inputs.values, inputs.keys,
               seq.state_product.weight, seq.state_product.bias, seq.b_in, comm_qkv.weight, comm_out.weight,
               comm_out.bias)
    sizes = (comm.num_heads, comm.key_size, comm.value_size)
    if torch.is_grad_enabled():
        stores = (seq.state_product.store, comm_qkv.store, comm_out.store)
        h, c, mask, probs, comm_attention = FusedStep.apply(*tensors, stores, core.config.k, block, *sizes)
    else:
        (h, c, mask, probs, comm_attention), _, _ = fused_step(*tensors, core.config.k, *sizes)
    return StepOutput((h, c) if c is not None else (h,), mask, probs, comm_attention)


def fused_step(h: Tensor, c: Tensor | None, values: Tensor, keys: Tensor, w_state: Tensor, b_state: Tensor,
               b_in: Tensor | None, w_comm: Tensor, w_out: Tensor, b_out: Tensor, k: int, heads: int,
               comm_key: int, comm_value: int) -> tuple[tuple[Tensor, ...], tuple, tuple]:
    """The forward ops of one step: ``(h_out, c_out | None, mask, probs, attention)``, and the tensors
    the backward needs (saved, cell). Called directly (no autograd node) when gradients are off."""
    K, B, H = h.shape
    G = values.shape[-1]
    lstm = c is not None
    hq = torch.baddbmm(b_state, h, w_state)
    gates_h, query = hq.split([G, hq.shape[-1] - G], dim=-1)
    dkey = query.shape[-1]
    scores = (query.view(K, B, 1, dkey) * keys[:, 0]).sum(-1, keepdim=True)  # [K, B, 1, 1]
    probs = torch.sigmoid(scores)
    mask = top_k_mask(scores.view(K, B), k)
    m3 = mask.unsqueeze(-1)
    p = probs.view(K, B, 1)
    v_in = values.view(K, B, G)
    if lstm:
        gates = torch.addcmul(gates_h, p, v_in)
        sig, cand = gates.split([3 * H, H], dim=-1)
        sig = torch.sigmoid(sig)
        i, f, o = sig.chunk(3, dim=-1)
        g = torch.tanh(cand)
        c_new = torch.addcmul(f * c, i, g)
        tc = torch.tanh(c_new)
        h_new = o * tc
        cell: tuple = (sig, g, tc)
    else:
        gates_x = torch.addcmul(b_in, p, v_in)
        x_rz, x_n = gates_x.split([2 * H, H], dim=-1)
        h_rz, h_n = gates_h.split([2 * H, H], dim=-1)
        rz = torch.sigmoid(x_rz + h_rz)
        r, z = rz.chunk(2, dim=-1)
        n = torch.tanh(torch.addcmul(x_n, r, h_n))
        diff = h - n
        h_new = torch.addcmul(n, z, diff)
        cell = (rz, n, diff, h_n)
    qkv = torch.bmm(h_new, w_comm).view(K, B, heads, -1)
    q, kk, v = qkv.split([comm_key, comm_key, comm_value], dim=-1)
    attention = torch.softmax((q.unsqueeze(1) * kk).sum(-1), dim=1)  # [Kq, Kk, B, heads]
    read = (attention.unsqueeze(-1) * v).sum(1)  # [Kq, B, heads, value]
    read2 = read.view(K, B, -1)
    gate, update = torch.baddbmm(b_out, read2, w_out).split(H, dim=-1)
    sg, tu = torch.sigmoid(gate), torch.tanh(update)
    h_c = h_new + sg * tu
    h_out = torch.where(m3, h_c, h)
    c_out = torch.where(m3, c_new, c) if lstm else None
    saved = (h, c, v_in, keys, w_state, w_comm, w_out, query, p, h_new, q, kk, v, attention, read2, sg, tu, m3)
    return (h_out, c_out, mask, probs, attention), saved, cell


class FusedStep(torch.autograd.Function):
    """``fused_step`` as one autograd node; ``backward`` is its chain rule written out by hand."""

    @staticmethod
    def forward(ctx, h, c, values, keys, w_state, b_state, b_in, w_comm, w_out, b_out, stores, k, block, heads,
                comm_key, comm_value):
        outputs, ctx.saved, ctx.cell = fused_step(h, c, values, keys, w_state, b_state, b_in, w_comm, w_out,
                                                  b_out, k, heads, comm_key, comm_value)
        ctx.stores, ctx.block, ctx.lstm = stores, block, c is not None
        ctx.mark_non_differentiable(*outputs[2:])
        return outputs

    @staticmethod
    def backward(ctx, dh_out, dc_out, _mask, _probs, _attention):
        if torch.is_grad_enabled():  # create_graph=True: this hand-written backward is not differentiable
            raise RuntimeError(
                "second-order gradients (create_graph=True) through the fused RIMs step are not supported: "
                "set core.backend = \"reference\" for them")
        (h, c, v_in, keys, w_state, w_comm, w_out, query, p, h_new, q, kk, v, attention, read2, sg, tu,
         m3) = ctx.saved
        store_state, store_comm, store_out = ctx.stores
        K, B, H = h.shape
        if dh_out is None:
            dh_out = torch.zeros_like(h)
        mf = m3.to(dh_out.dtype)  # masked write: the active RIMs' gradient goes to the update, the rest to h
        dh_c = dh_out * mf
        dh_prev = dh_out - dh_c
        # communication: h_c = h_new + sigmoid(gate) * tanh(update), gate|update = read W_out + b_out
        d_go = torch.cat([_sigmoid_backward(dh_c * tu, sg), _tanh_backward(dh_c * sg, tu)], dim=-1)
        store_out.add(read2, d_go)
        d_read = torch.bmm(d_go, w_out.transpose(1, 2)).view(q.shape[:-1] + (v.shape[-1],))  # [Kq, B, heads, value]
        d_att = (d_read.unsqueeze(1) * v).sum(-1)  # [Kq, Kk, B, heads]
        d_v = (attention.unsqueeze(-1) * d_read.unsqueeze(1)).sum(0)  # [Kk, B, heads, value]
        d_s = torch.ops.aten._softmax_backward_data(d_att, attention, 1, attention.dtype)
        d_q = (d_s.unsqueeze(-1) * kk).sum(1)  # [Kq, B, heads, key]
        d_k = (d_s.unsqueeze(-1) * q.unsqueeze(1)).sum(0)  # [Kk, B, heads, key]
        d_qkv = torch.cat([d_q, d_k, d_v], dim=-1).view(K, B, -1)
        store_comm.add(h_new, d_qkv)
        dh_new = torch.baddbmm(dh_c, d_qkv, w_comm.transpose(1, 2))
        if ctx.block:
            dh_new = dh_new * mf
        d_b_in = None
        if ctx.lstm:
            sig, g, tc = ctx.cell
            i, f, o = sig.chunk(3, dim=-1)
            dc_tot = _tanh_backward(dh_new * o, tc)
            dc_prev = None
            if dc_out is not None:
                dc_new = dc_out * mf
                dc_tot = dc_tot + dc_new
                dc_prev = dc_out - dc_new
            d_sig = _sigmoid_backward(torch.cat([dc_tot * g, dc_tot * c, dh_new * tc], dim=-1), sig)
            d_gx = torch.cat([d_sig, _tanh_backward(dc_tot * i, g)], dim=-1)
            d_gh = d_gx
            dcf = dc_tot * f
            dc_prev = dcf if dc_prev is None else dc_prev + dcf
        else:
            rz, n, diff, h_n = ctx.cell
            r, z = rz.chunk(2, dim=-1)
            d_pre_n = _tanh_backward(dh_new - dh_new * z, n)
            d_rz = _sigmoid_backward(torch.cat([d_pre_n * h_n, dh_new * diff], dim=-1), rz)
            d_gx = torch.cat([d_rz, d_pre_n], dim=-1)
            d_gh = torch.cat([d_rz, d_pre_n * r], dim=-1)
            dh_prev = torch.addcmul(dh_prev, dh_new, z)
            dc_prev = None
            if ctx.needs_input_grad[6]:
                d_b_in = d_gx.sum(1, keepdim=True)
        # input: gates_x = p * v_in (+ b_in), p = sigmoid(query . key)
        d_values = (d_gx * p).view(v_in.shape[0], v_in.shape[1], 1, -1)
        d_score = _sigmoid_backward((d_gx * v_in).sum(-1, keepdim=True), p)  # [K, B, 1]
        key = keys.view(1, B, -1)
        d_query = d_score * key
        d_keys = (d_score * query).sum(0).view(keys.shape)
        d_hq = torch.cat([d_gh, d_query], dim=-1)
        store_state.add(h, d_hq)
        dh_prev = torch.baddbmm(dh_prev, d_hq, w_state.transpose(1, 2))
        return (dh_prev, dc_prev, d_values, d_keys, None, None, d_b_in, None, None, None, None, None, None, None,
                None, None)
