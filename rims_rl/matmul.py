"""The sequence-level matrix products of the RIMs kernel path, through oneDNN where it runs them.

``torch.mm`` on a CPU calls the BLAS torch was built with (MKL in the official wheels). On some CPUs
that BLAS leaves half the vector width unused (measured on an AMD EPYC with AVX-512: about
100 GFLOP/s for ``[1024, 340] x [340, 2040]`` in one thread, against about 230 GFLOP/s for the same
product through oneDNN, the library ``nn.LSTM`` itself runs on). The products over all T*B rows of a
sequence (the input projection, the input-to-gate product and their gradients) therefore go through
oneDNN's linear op (``torch.ops.mkldnn._linear_pointwise``) for float32 CPU tensors when torch has it,
else through ``torch.mm``. The values are the same products (rounding may differ in the last bits).
``RIMS_RL_ONEDNN=0`` turns it off. Small per-step products stay with ``torch.bmm`` (oneDNN's call
overhead loses there).
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

_state: dict = {}
# Products with fewer multiply-adds run through torch (oneDNN's fixed cost per call loses there:
# measured 13 us against 6 us for [16, 64] x [64, 192]).
MIN_ONEDNN_PRODUCT = 1 << 19


def onednn_available() -> bool:
    """Whether oneDNN's linear op is present and not turned off (``RIMS_RL_ONEDNN=0``); cached."""
    if "ok" not in _state:
        ok = os.environ.get("RIMS_RL_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()
        if ok:
            try:
                op = torch.ops.mkldnn._linear_pointwise
                probe = torch.ones(2, 3)
                ok = bool(torch.equal(op(probe, torch.ones(4, 3), None, "none", [], ""), torch.full((2, 4), 3.0)))
            except (AttributeError, RuntimeError):
                ok = False
        _state["ok"] = ok
    return _state["ok"]


def uses_onednn(x: Tensor) -> bool:
    """Whether products of tensors like ``x`` (dtype and device) run through oneDNN."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and onednn_available()


def _dense(m: Tensor) -> Tensor:
    """``m`` (2-D) row- or column-major: other strides send oneDNN to its reference loops (1000x slower)."""
    return m if m.is_contiguous() or m.t().is_contiguous() else m.contiguous()


def _onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x [N, in] @ weight [out, in]^T (+ bias [out]) through oneDNN; any strides."""
    return torch.ops.mkldnn._linear_pointwise(_dense(x), _dense(weight), bias, "none", [], "")


def _weight_grad(grad: Tensor, x: Tensor) -> Tensor:
    """grad [N, out]^T @ x [N, in] -> [out, in], in the operand order oneDNN runs faster (measured:
    the larger of out and in as the output's columns)."""
    if grad.shape[1] > x.shape[1]:
        return _onednn_linear(x.t(), grad.t()).t()
    return _onednn_linear(grad.t(), x.t())


class _Linear(torch.autograd.Function):
    """``F.linear`` on 2-D x whose forward and backward products all run through oneDNN (the three have
    the same number of multiply-adds, so :func:`linear` decides for all of them at once)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiable ops
            dx = grad.mm(weight) if ctx.needs_input_grad[0] else None
            dw = grad.t().mm(x) if ctx.needs_input_grad[1] else None
        else:
            dx = _onednn_linear(grad, weight.t()) if ctx.needs_input_grad[0] else None
            dw = _weight_grad(grad, x) if ctx.needs_input_grad[1] else None
        db = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``torch.nn.functional.linear(x, weight, bias)`` for x [..., in], weight [out, in], bias [out] or None:
    through oneDNN for float32 CPU products of at least ``MIN_ONEDNN_PRODUCT`` multiply-adds (a second
    derivative goes through ``torch.mm``), else ``F.linear`` itself."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if not uses_onednn(x) or rows * x.shape[-1] * weight.shape[0] < MIN_ONEDNN_PRODUCT:
        return torch.nn.functional.linear(x, weight, bias)
    lead = x.shape[:-1]
    return _Linear.apply(x.reshape(-1, x.shape[-1]), weight, bias).view(*lead, weight.shape[0])


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a [N, n] @ b [n, m]`` (as :func:`linear`)."""
    return linear(a, b.t())
