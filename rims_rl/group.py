"""Per-RIM ("grouped") weights and the grouped LSTM/GRU cells.

Every tensor here is laid out unit-major, ``[K, B, features]``, so that the K per-RIM weight
matrices ``[K, in, out]`` are applied with one ``torch.bmm``/``baddbmm`` (no loop over RIMs,
no dense block-diagonal matrix).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GroupLinear(nn.Module):
    """K independent linear maps applied in one batched op: ``[K, B, in] -> [K, B, out]``."""

    def __init__(self, num_units: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.num_units, self.in_features, self.out_features = num_units, in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_units, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_units, 1, out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """x: [K, B, in] -> [K, B, out]."""
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return (f"num_units={self.num_units}, in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class _GroupCell(nn.Module):
    """Per-RIM input-to-gate and hidden-to-gate weights of ``num_gates`` gates, initialised as torch's RNNs."""

    num_states: int
    num_gates: int

    def __init__(self, num_units: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.gate_size = self.num_gates * hidden_size
        self.input_to_gates = GroupLinear(num_units, input_size, self.gate_size)
        self.hidden_to_gates = GroupLinear(num_units, hidden_size, self.gate_size)
        _uniform_like_torch_rnn(self, hidden_size)


class GroupLSTMCell(_GroupCell):
    """K independent LSTM cells. Gate columns are ordered ``[input, forget, output, candidate]``.

    The cell only owns the weights and the nonlinearity; the caller computes the gate
    pre-activations (so it can fuse the hidden-to-gate product with other per-RIM products).
    """

    num_states = 2
    num_gates = 4

    def forward(self, gates_x: Tensor, gates_h: Tensor | None, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """gates_x, gates_h: [K, B, 4H] pre-activations (biases included; gates_h=None: gates_x holds
        the sum); state (h, c) [K, B, H] -> (h, c)."""
        H = self.hidden_size
        gates = gates_x if gates_h is None else gates_x + gates_h
        sig, cand = gates.split([3 * H, H], dim=-1)
        i, f, o = torch.sigmoid(sig).chunk(3, dim=-1)
        c = torch.addcmul(f * state[1], i, torch.tanh(cand))
        return o * torch.tanh(c), c


class GroupGRUCell(_GroupCell):
    """K independent GRU cells (``torch.nn.GRUCell`` equations). Gate columns ``[reset, update, new]``."""

    num_states = 1
    num_gates = 3

    def forward(self, gates_x: Tensor, gates_h: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """gates_x, gates_h: [K, B, 3H] pre-activations (biases included); state (h,) [K, B, H]."""
        H = self.hidden_size
        x_rz, x_n = gates_x.split([2 * H, H], dim=-1)
        h_rz, h_n = gates_h.split([2 * H, H], dim=-1)
        r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=-1)
        n = torch.tanh(torch.addcmul(x_n, r, h_n))
        return (torch.addcmul(n, z, state[0] - n),)


def _uniform_like_torch_rnn(cell: nn.Module, hidden_size: int) -> None:
    """torch.nn.LSTM/GRU initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-bound, bound)


def make_cell(cell: str, num_units: int, input_size: int, hidden_size: int) -> GroupLSTMCell | GroupGRUCell:
    """The grouped cell named by ``RIMsConfig.cell`` (validated there)."""
    return {"lstm": GroupLSTMCell, "gru": GroupGRUCell}[cell](num_units, input_size, hidden_size)


class _GradStore:
    """Inputs and output gradients of the per-step products of one sequence, filled during backward.

    Entries belong to one backward pass (autograd graph task): a pass that does not reach the weights
    (e.g. ``torch.autograd.grad(loss, x, retain_graph=True)``) leaves entries that the next pass drops,
    so weight gradients are exact whatever the order of backward calls.
    """

    __slots__ = ("inputs", "grads", "task")

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.task = -1

    def add(self, x: Tensor, grad: Tensor) -> None:
        """Record one step's product input and output gradient for the current backward pass."""
        task = torch._C._current_graph_task_id()
        if task != self.task:
            self.inputs, self.grads, self.task = [], [], task
        self.inputs.append(x)
        self.grads.append(grad)

    def take(self) -> tuple[list[Tensor], list[Tensor]]:
        """The current backward pass's entries (emptied)."""
        inputs, grads = (self.inputs, self.grads) if self.task == torch._C._current_graph_task_id() else ([], [])
        self.inputs, self.grads, self.task = [], [], -1
        return inputs, grads


class _DeferredParams(torch.autograd.Function):
    """Hands the (weight, bias) of a per-step product to the loop; its backward runs after every step's
    backward (autograd orders it after all its users) and computes the weight and bias gradients of all
    steps at once: one ``[K, in, T*B] x [K, T*B, out]`` product instead of T small products + T adds."""

    @staticmethod
    def forward(ctx, weight: Tensor, bias: Tensor | None, store: _GradStore):
        ctx.store, ctx.has_bias = store, bias is not None
        ctx.set_materialize_grads(False)
        return weight.view_as(weight), (bias.view_as(bias) if bias is not None else None)

    @staticmethod
    def backward(ctx, d_weight: Tensor | None, d_bias: Tensor | None):
        inputs, grads = ctx.store.take()
        if not grads:
            return d_weight, d_bias, None
        x = torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0]  # [K, T*B, in]
        g = torch.cat(grads, dim=1) if len(grads) > 1 else grads[0]  # [K, T*B, out]
        dw = torch.bmm(x.transpose(1, 2), g)
        if d_weight is not None:
            dw = dw + d_weight
        db = None
        if ctx.has_bias:
            db = g.sum(1, keepdim=True)
            if d_bias is not None:
                db = db + d_bias
        return dw, db, None


class _StepProduct(torch.autograd.Function):
    """``baddbmm(bias, x, weight)`` (``bmm`` without bias) whose backward gives only the input gradient
    and leaves the weight/bias gradients to ``_DeferredParams`` (it stores x and the output gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, store: _GradStore) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.store = store
        return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias, x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            ctx.store.add(x, grad)
        dx = torch.bmm(grad, weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        return dx, None, None, None


class StepProduct:
    """The per-RIM product ``x [K, B, in] -> baddbmm(bias, x, weight) [K, B, out]`` used at every step of
    one sequence. With gradients enabled, the weight and bias gradients of all steps are computed in one
    batched product at the end of the backward (``_DeferredParams``); the values are the same products,
    summed in a different order. Build one per forward call (it holds that call's gradient store)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        self.deferred = torch.is_grad_enabled() and (
            weight.requires_grad or (bias is not None and bias.requires_grad))
        if self.deferred:
            self.store = _GradStore()
            weight, bias = _DeferredParams.apply(weight, bias, self.store)
        self.weight, self.bias = weight, bias

    def __call__(self, x: Tensor) -> Tensor:
        if self.deferred:
            return _StepProduct.apply(x, self.weight, self.bias, self.store)
        return torch.bmm(x, self.weight) if self.bias is None else torch.baddbmm(self.bias, x, self.weight)
