"""The compiled RIMs backend: the whole sequence through ``csrc/sequence.cpp`` (``torch.ops.rims_rl_cpp``).

It computes the arithmetic of ``rims_rl.reference`` for one input row and one input head (see
``unsupported_reason``). ``available()`` builds and loads the library on first use
(``rims_rl.kernel_cache``); without a compiler, or if the build fails, it warns once and returns False,
and ``RIMs`` runs its pure-PyTorch steps. ``RIMS_RL_KERNEL=0`` turns the kernel off.
"""
from __future__ import annotations

import os
import warnings
import weakref
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from . import kernel_cache, matmul
from .reference import SequenceResult

if TYPE_CHECKING:
    from .rims import RIMs

# Per-RIM products up to this many multiply-adds run as the kernel's own register tiles, larger ones as
# at::bmm. The tiles were faster than at::bmm (MKL) at every size measured, up to 26M multiply-adds
# (B=128); at::bmm stays for larger ones, where its weight packing pays off.
SMALL_PRODUCT = 1 << 28
_state: dict = {}  # "ok": bool once tried; "error": why not
# Per core: the kernel's weight tensors for no-grad calls, kept until a parameter changes.
_weight_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class KernelConfig(NamedTuple):
    """The kernel's integer options. The ops take them as a list of ints in this order, which
    ``RIMS_CONFIG_FIELDS`` in ``csrc/sequence.cpp`` defines too (checked when the library loads)."""

    lstm: bool  # cell "lstm" (else "gru")
    k: int  # active RIMs per step
    across: bool  # selection "across" (else "null")
    renormalise: bool  # across_renormalise
    communication: bool
    comm_kept: bool  # comm_inactive "kept" (else "tentative")
    block_inactive_grad: bool  # in effect for this call (k < K, gradients on)
    comm_heads: int  # 1 without communication
    comm_key_size: int
    comm_value_size: int
    small_product: int  # per-RIM products above this many multiply-adds go through at::bmm
    onednn: bool  # the sequence-level products through oneDNN (rims_rl.matmul)


def _pack(config: KernelConfig) -> list[int]:
    """The list of ints the ops take (the one place a ``KernelConfig`` becomes one)."""
    return [int(value) for value in config]


def available() -> bool:
    """Whether ``torch.ops.rims_rl_cpp`` is loaded (builds it on the first call; cached). Warns once if a
    damaged cached library was rebuilt, or if there is no kernel (then ``RIMs`` runs pure PyTorch)."""
    if "ok" not in _state:
        if os.environ.get("RIMS_RL_KERNEL", "1") == "0":
            _state.update(ok=False, error="turned off by RIMS_RL_KERNEL=0")
            return False
        try:
            rebuilt = kernel_cache.load()
            fields = tuple(torch.ops.rims_rl_cpp.config_fields())
            if fields != KernelConfig._fields:
                raise kernel_cache.BuildError(f"its options {fields} are not KernelConfig's {KernelConfig._fields}")
        except (kernel_cache.BuildError, OSError) as error:
            _state.update(ok=False, error=str(error))
            warnings.warn(f"rims_rl: the compiled sequence kernel is unavailable ({error}); "
                          "RIMs runs its pure-PyTorch steps", RuntimeWarning, stacklevel=2)
        else:
            _state.update(ok=True, error=None)
            if rebuilt is not None:
                warnings.warn(f"rims_rl: {rebuilt}", RuntimeWarning, stacklevel=2)
    return _state["ok"]


def unavailable_reason() -> str | None:
    """Why the kernel is not loaded (None if it is or was not tried)."""
    return _state.get("error")


def unsupported_reason(core: RIMs, x: Tensor) -> str | None:
    """Why the kernel cannot run ``core`` on ``x`` [T, B, R, D] (None: it can)."""
    cfg = core.config
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return f"device {x.device.type} / dtype {x.dtype} (the kernel runs float32/float64 on CPU)"
    if core.input_attention is None or x.shape[2] != 1 or cfg.num_input_heads != 1 or not core.fold_single_row:
        return "it covers one input row, one input head, input attention on and fold_single_row=True"
    if core.training and (cfg.input_dropout > 0 or cfg.comm_dropout > 0):
        return "active dropout"
    if not available():
        return f"it is unavailable: {unavailable_reason()}"
    return None


def forward(core: RIMs, x: Tensor, state: tuple[Tensor, ...], initial: list[Tensor],
            starts: Tensor | None) -> SequenceResult:
    """The whole sequence through the kernel. x [T, B, 1, D]; state: unit-major [K, B, H] tensors;
    initial: the initial states [K, H]; starts: [T, 1, B, 1] bools or None."""
    cfg, attn, comm = core.config, core.input_attention, core.communication
    T, B, _, _ = x.shape
    K, H = cfg.num_units, cfg.unit_size
    lstm = cfg.cell == "lstm"
    # the products over all T*B rows: through oneDNN where it runs them (rims_rl.matmul)
    keys, values = attn.project(x + core.row_embedding, matmul.linear)  # [T, B, 1, 1, *]
    w_in, w_state, b_state, b_in, w_comm, w_out, b_out, doubled_out, init = _weights(core, x, initial)
    gate_inputs = matmul.matmul(values.reshape(T * B, -1), w_in).view(T, B, K, -1)  # [T, B, K, G]
    empty = x.new_empty(0)
    start_bytes = (torch.zeros(T, B, dtype=torch.uint8) if starts is None
                   else starts.view(T, B).to(torch.uint8).contiguous())
    config = KernelConfig(
        lstm=lstm, k=cfg.k, across=cfg.selection == "across", renormalise=cfg.across_renormalise,
        communication=comm is not None, comm_kept=cfg.comm_inactive == "kept",
        block_inactive_grad=cfg.block_inactive_grad and K > cfg.k and torch.is_grad_enabled(),
        comm_heads=comm.num_heads if comm is not None else 1, comm_key_size=comm.key_size if comm is not None else 1,
        comm_value_size=comm.value_size if comm is not None else 1, small_product=SMALL_PRODUCT,
        onednn=matmul.uses_onednn(x))
    out, c_final, mask, probs, att = run(
        state[0], state[1] if lstm else empty, gate_inputs, keys.reshape(T, B, -1).contiguous(),
        w_state, b_state, b_in, w_comm, w_out, b_out, init, start_bytes, config, doubled_out)
    final = (out[-1].transpose(0, 1),) + ((c_final.transpose(0, 1),) if lstm else ())
    return SequenceResult(out.permute(0, 2, 1, 3).reshape(T, B, K * H), final, mask if cfg.k < K else None,
                          probs.view(T, K, B, 1, 1), att if comm is not None else None)


def _weights(core: RIMs, x: Tensor, initial: list[Tensor]) -> tuple[Tensor, ...]:
    """The kernel's weight tensors: (w_in [value, K*G], w_state, b_state, b_in, w_comm, w_out, b_out,
    doubled (w_out, b_out), init). Built from the parameters at every call with gradients on; with
    gradients off (rollouts) kept until a parameter changes (in-place update, load, move)."""
    key = None
    if not torch.is_grad_enabled():
        key = (x.dtype, x.device) + tuple((id(p), p._version, p.data_ptr()) for p in core.parameters())
        cached = _weight_cache.get(core)
        if cached is not None and cached[0] == key:
            return cached[1]
    cell, attn, comm = core.cell, core.input_attention, core.communication
    K, lstm = core.config.num_units, core.config.cell == "lstm"
    w_in = cell.input_to_gates.weight  # [K, value, G] -> [value, K*G]: one product for all RIMs and steps
    w_in = w_in.transpose(0, 1).reshape(w_in.shape[1], -1)
    w_state = torch.cat([cell.hidden_to_gates.weight, attn.query.weight], dim=-1)
    b_gates = cell.hidden_to_gates.bias + cell.input_to_gates.bias if lstm else cell.hidden_to_gates.bias
    b_state = torch.cat([b_gates, b_gates.new_zeros(K, 1, attn.query.out_features)], dim=-1)
    empty = x.new_empty(0)
    b_in = empty if lstm else cell.input_to_gates.bias
    if comm is not None:
        w_comm, w_out, b_out = comm.scaled_weight(), comm.output_gate.weight, comm.output_gate.bias
    else:
        w_comm = w_out = b_out = empty
    w_out, b_out, b_in = w_out.contiguous(), b_out.contiguous(), b_in.contiguous()
    weights = (w_in, w_state, b_state, b_in, w_comm.contiguous(), w_out, b_out,
               double_update_columns(w_out, b_out), torch.stack(initial).to(x.dtype))
    if key is not None:
        _weight_cache[core] = (key, weights)
    return weights


class SequenceKernel(torch.autograd.Function):
    """The whole recurrence as one autograd node: forward and backward are the compiled ops.

    Inputs as in ``csrc/sequence.cpp`` (``flags``: the packed ``KernelConfig``); returns (out [T, K, B, H],
    final c [K, B, H] or empty, mask [T, K, B], probs [T, K, B], comm attention [T, K, K, B, heads] or empty).
    """

    @staticmethod
    def forward(ctx, h0, c0, values, keys, w_state, b_state, b_in, w_comm, w_out, b_out, init, starts, flags,
                doubled_out):
        saved = torch.ops.rims_rl_cpp.forward(h0, c0, values, keys, w_state, b_state, b_in, w_comm, *doubled_out,
                                              init, starts, flags)
        out, cprev, mask, probs, att = saved[:5]
        # Through save_for_backward, not as ctx attributes: the saved list holds the output, and an output
        # kept on ctx is a reference cycle (output -> C++ node -> ctx -> output) that not even the garbage
        # collector frees: every training call's buffers would stay in memory for the life of the process.
        ctx.save_for_backward(*saved, values, keys, w_state, w_comm, w_out, starts)
        ctx.num_saved = len(saved)
        ctx.flags, ctx.lstm, ctx.comm = flags, c0.numel() > 0, w_comm.numel() > 0
        c_final = cprev[-1].clone() if ctx.lstm else cprev
        ctx.mark_non_differentiable(mask, probs, att)
        return out, c_final, mask, probs, att

    @staticmethod
    def backward(ctx, d_out, d_c, _mask, _probs, _att):
        if torch.is_grad_enabled():
            raise RuntimeError("second-order gradients (create_graph=True) through the compiled RIMs kernel are "
                               "not supported: set core.backend = \"reference\" for them")
        tensors = ctx.saved_tensors
        saved, (values, keys, w_state, w_comm, w_out, starts) = tensors[:ctx.num_saved], tensors[ctx.num_saved:]
        out = saved[0]
        d_out = torch.zeros_like(out) if d_out is None else d_out.contiguous()
        d_hT = torch.zeros_like(out[0])
        if ctx.lstm:
            d_cT = torch.zeros_like(out[0]) if d_c is None else d_c.contiguous()
        else:
            d_cT = out.new_empty(0)
        grads = torch.ops.rims_rl_cpp.backward(list(saved), values, keys, w_state, w_comm, w_out, starts, d_out,
                                               d_hT, d_cT, ctx.flags)
        d_h0, d_c0, d_values, d_keys, d_w_state, d_b_state, d_b_in, d_w_comm, d_w_out, d_b_out, d_init = grads
        comm = (d_w_comm, d_w_out, d_b_out) if ctx.comm else (None, None, None)
        return (d_h0, d_c0 if ctx.lstm else None, d_values, d_keys, d_w_state, d_b_state,
                None if ctx.lstm else d_b_in, *comm, d_init, None, None, None)


def double_update_columns(w_out: Tensor, b_out: Tensor) -> tuple[Tensor, Tensor]:
    """The output-gate weight and bias with the update columns (the last half) doubled, as the
    kernel's forward takes them (it computes tanh(x) as 2 sigmoid(2x) - 1). Not differentiable."""
    with torch.no_grad():
        if w_out.numel() == 0:
            return w_out, b_out
        scale = torch.ones(w_out.shape[-1], dtype=w_out.dtype, device=w_out.device)
        scale[w_out.shape[-1] // 2:] = 2.0
        return w_out * scale, b_out * scale


def run(h0: Tensor, c0: Tensor, values: Tensor, keys: Tensor, w_state: Tensor, b_state: Tensor, b_in: Tensor,
        w_comm: Tensor, w_out: Tensor, b_out: Tensor, init: Tensor, starts: Tensor, config: KernelConfig,
        doubled_out: tuple[Tensor, Tensor] | None = None):
    """Run the kernel (an autograd node when gradients are on). ``doubled_out``:
    ``double_update_columns(w_out, b_out)`` if the caller has it cached."""
    doubled_out = double_update_columns(w_out, b_out) if doubled_out is None else doubled_out
    flags = _pack(config)
    if torch.is_grad_enabled():
        return SequenceKernel.apply(h0, c0, values, keys, w_state, b_state, b_in, w_comm, w_out, b_out, init,
                                    starts, flags, doubled_out)
    saved = torch.ops.rims_rl_cpp.forward(h0, c0, values, keys, w_state, b_state, b_in, w_comm, *doubled_out,
                                          init, starts, flags)
    out, cprev, mask, probs, att = saved[:5]
    return out, (cprev[-1] if c0.numel() > 0 else cprev), mask, probs, att
