"""RIMs: the Recurrent Independent Mechanisms sequence module (see docs/core.md)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .attention import Communication, InputAttention, top_k_mask
from . import kernel, matmul
from .config import RIMsConfig
from .fused import FusedStep, fused_step
from .group import StepProduct, make_cell


BACKENDS = ("auto", "cpp", "fused", "reference")


class RIMsInfo(NamedTuple):
    """Per-step diagnostics of a forward pass (detached).

    mask: [T, B, K] bool, the active RIMs.
    input_attention: [T, B, K, R+1], attention on ``[null, row_1..row_R]`` averaged over heads
        (the null column is 0 for ``selection="across"``; with ``input_attention=False`` every RIM
        reads all rows: null 0, rows 1/R).
    comm_attention: [T, B, heads, K, K] (query RIM, key RIM); rows of inactive RIMs are 0.
        None when ``communication=False``.
    """

    mask: Tensor
    input_attention: Tensor
    comm_attention: Tensor | None


State = tuple[Tensor, ...]


class _Sequence(NamedTuple):
    """Per-sequence tensors precomputed by ``RIMs._prepare`` (lists hold one tensor per step)."""

    state_product: StepProduct  # h [K, B, H] -> [K, B, G (+ heads*key)]: hidden-to-gates (| queries)
    keys: tuple[Tensor, ...] | None  # T x [B, R, heads, key]
    values: tuple[Tensor, ...] | None  # T x [B, R, heads, value], or folded: T x [K, B, heads, G]
    folded: bool  # values hold input-to-gate pre-activations (one input row)
    input_gates: tuple[Tensor, ...] | None  # without input attention: T x [K, B, G]
    b_in: Tensor | None  # [K, 1, G] input bias, None when already inside b_state
    comm_products: tuple[StepProduct, StepProduct] | None  # Communication.step_products()

    def step_inputs(self, t: int) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(keys, values, input gates) of step t."""
        pick = (lambda xs: None if xs is None else xs[t])
        return pick(self.keys), pick(self.values), pick(self.input_gates)


class RIMs(nn.Module):
    """A sequence of RIMs steps over ``x`` with resets at episode starts.

    Args:
        input_size: D, the size of one input row.
        config: the hyperparameters (:class:`RIMsConfig`).
        num_input_rows: R if the input comes as R rows ``[T, B, R, D]`` with a fixed meaning per row
            (e.g. the positions of a CNN feature map): a learned positional embedding ``[R, D]`` is added
            to the rows, and inputs must have exactly R rows. None (default): one learned embedding
            ``[1, D]`` is added to every row (so a zero row differs from the null row); with input
            attention any number of rows is accepted (an unordered set), without it only one row.

    Shapes: ``forward(x [T, B, D] or [T, B, R, D], state, episode_starts [T, B])`` returns
    ``out [T, B, K*H]``, the final state (tuple of [B, K, H]: (h, c) for lstm, (h,) for gru) and a
    :class:`RIMsInfo`. ``output_size == K * H``.
    """

    def __init__(self, input_size: int, config: RIMsConfig | None = None, num_input_rows: int | None = None) -> None:
        super().__init__()
        config = RIMsConfig() if config is None else config
        if not isinstance(config, RIMsConfig):
            raise ValueError(f"RIMs config={config!r} is invalid: valid values are RIMsConfig instances")
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"RIMs input_size={input_size!r} is invalid: valid values are integers >= 1")
        if num_input_rows is not None and (
                isinstance(num_input_rows, bool) or not isinstance(num_input_rows, int) or num_input_rows < 1):
            raise ValueError(f"RIMs num_input_rows={num_input_rows!r} is invalid: valid values are None or integers >= 1")
        self.config, self.input_size, self.num_input_rows = config, input_size, num_input_rows
        K, H = config.num_units, config.unit_size
        self.output_size = K * H

        self.row_embedding = None
        self.input_attention = None
        if config.input_attention:
            # Added to every input row: R > 1 given -> one learned vector per position; otherwise one
            # vector shared by all rows. Either way an all-zero input row gets a non-zero key and so
            # never looks like the null row (whose key is exactly 0).
            self.row_embedding = nn.Parameter(0.1 * torch.randn(num_input_rows or 1, input_size))
            self.input_attention = InputAttention(input_size, K, H, config.input_key_size, config.value_size,
                                                  config.num_input_heads, config.selection, config.input_dropout)
            cell_input_size = self.input_attention.read_size
        else:
            cell_input_size = (num_input_rows or 1) * input_size
        self.cell = make_cell(config.cell, K, cell_input_size, H)
        self.communication = None
        if config.communication:
            self.communication = Communication(K, H, config.comm_key_size, config.comm_value_size,
                                               config.num_comm_heads, config.comm_dropout)
        init = [torch.empty(K, H).normal_(0.0, 0.1) if config.learned_initial_state else torch.zeros(K, H)
                for _ in range(self.cell.num_states)]
        if config.learned_initial_state:
            self.initial_states = nn.ParameterList([nn.Parameter(s) for s in init])
        else:
            for i, s in enumerate(init):
                self.register_buffer(f"_initial_state_{i}", s)
            self.initial_states = None
        # Internal switch (tests compare both paths): fold the value projection into the
        # input-to-gate weights for all T steps at once when there is one input row.
        self._fold_single_row = True
        self.backend = "auto"
        self._kernel_cache: tuple | None = None  # (parameter versions, weights) for no-grad kernel calls
        self.last_path: str | None = None  # the path the last forward call ran (see ``backend``)

    @property
    def backend(self) -> str:
        """Which implementation runs the steps: ``"auto"`` (default: the fastest that covers the
        configuration and device: ``"cpp"``, else ``"fused"``, else ``"reference"``), ``"cpp"`` (the
        compiled sequence kernel, ``rims_rl.kernel``; raises if it is unavailable or does not cover the
        call), ``"fused"`` (at most the Python fused step, ``rims_rl.fused``) or ``"reference"`` (the
        op-by-op step, also differentiable twice). ``last_path`` names the one the last call ran."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"RIMs backend={value!r} is invalid: valid values are {', '.join(BACKENDS)}")
        self._backend = value

    # ------------------------------------------------------------------ state
    def _initial(self) -> list[Tensor]:
        """The initial states, each [K, H]."""
        if self.initial_states is not None:
            return list(self.initial_states)
        return [getattr(self, f"_initial_state_{i}") for i in range(self.cell.num_states)]

    def initial_state(self, batch_size: int) -> State:
        """The (learned) initial state: tuple of [B, K, H] ((h, c) for lstm, (h,) for gru).

        The tensors stay connected to the learned parameters (detach them if you store them).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"initial_state batch_size={batch_size!r} is invalid: valid values are integers >= 1")
        return tuple(s.unsqueeze(0).expand(batch_size, -1, -1).clone() for s in self._initial())

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor, state: State | None = None,
                episode_starts: Tensor | None = None) -> tuple[Tensor, State, RIMsInfo]:
        """Run T steps. x [T, B, D] or [T, B, R, D]; state: tuple of [B, K, H] (None: initial state);
        episode_starts [T, B] (1 where an episode begins: the state is reset to the initial state
        before that step; None: no resets). Returns (out [T, B, K*H], final state, RIMsInfo)."""
        cfg = self.config
        x = self._check_input(x)
        T, B, R, _ = x.shape
        K, H = cfg.num_units, cfg.unit_size
        state = self.initial_state(B) if state is None else self._check_state(state, B)
        h_state = tuple(s.to(x.dtype).transpose(0, 1).contiguous() for s in state)  # [K, B, H]
        initial = [s.to(x.dtype).unsqueeze(1) for s in self._initial()]  # [K, 1, H]
        resets, starts = self._check_starts(episode_starts, T, B, x)
        if self._kernel_ok(x):
            self.last_path = "cpp"
            return self._forward_kernel(x, h_state, starts)

        seq = self._prepare(x)
        block = self.config.block_inactive_grad and K > self.config.k and torch.is_grad_enabled()
        fused = self._fused_ok(seq)
        self.last_path = "fused" if fused else "reference"
        outs, masks, probs_all, comm_all = [], [], [], []
        for t in range(T):
            if resets[t]:  # where, not a product: the old state may hold NaN or inf (NaN * 0 = NaN)
                h_state = tuple(torch.where(starts[t], s0, s) for s, s0 in zip(h_state, initial))
            h_state, mask, probs, comm_attention = self._step(h_state, seq.step_inputs(t), seq, block, fused)
            outs.append(h_state[0])
            if mask is not None:
                masks.append(mask)
            if probs is not None:
                probs_all.append(probs)
            if comm_attention is not None:
                comm_all.append(comm_attention)

        out = torch.stack(outs).permute(0, 2, 1, 3).reshape(T, B, K * H)
        final = tuple(s.transpose(0, 1) for s in h_state)
        return out, final, self._info(torch.stack(masks) if masks else None,
                                      torch.stack(probs_all) if probs_all else None,
                                      torch.stack(comm_all) if comm_all else None, T, B, R, x)

    # ----------------------------------------------------------------- kernel
    def _kernel_ok(self, x: Tensor) -> bool:
        """Whether the compiled sequence kernel runs this call (``backend`` "auto" or "cpp")."""
        if self.backend not in ("auto", "cpp"):
            return False
        cfg = self.config
        reason = None
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            reason = f"device {x.device.type} / dtype {x.dtype} (the kernel runs float32/float64 on CPU)"
        elif self.input_attention is None or x.shape[2] != 1 or cfg.num_input_heads != 1 or not self._fold_single_row:
            reason = "it covers one input row, one input head and input attention on"
        elif self.training and (cfg.input_dropout > 0 or cfg.comm_dropout > 0):
            reason = "active dropout"
        elif not kernel.available():
            reason = f"it is unavailable: {kernel.unavailable_reason()}"
        if reason is not None and self.backend == "cpp":
            raise RuntimeError(f"RIMs backend='cpp' cannot run this call: {reason}")
        return reason is None

    def _kernel_weights(self, x: Tensor) -> tuple[Tensor, ...]:
        """The kernel's weight tensors: (w_in [value, K*G], w_state, b_state, b_in, w_comm, w_out, b_out,
        doubled (w_out, b_out), init). Built from the parameters at every call with gradients on; with
        gradients off (rollouts) kept until a parameter changes (in-place update, load, move)."""
        key = None
        if not torch.is_grad_enabled():
            key = (x.dtype, x.device) + tuple((id(p), p._version, p.data_ptr()) for p in self.parameters())
            if self._kernel_cache is not None and self._kernel_cache[0] == key:
                return self._kernel_cache[1]
        cell, attn, comm = self.cell, self.input_attention, self.communication
        K, lstm = self.config.num_units, self.config.cell == "lstm"
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
                   kernel.double_update_columns(w_out, b_out), torch.stack(self._initial()).to(x.dtype))
        if key is not None:
            self._kernel_cache = (key, weights)
        return weights

    def _forward_kernel(self, x: Tensor, h_state: State, starts: Tensor | None) -> tuple[Tensor, State, RIMsInfo]:
        """The whole sequence through ``rims_rl.kernel`` (same arithmetic as the steps)."""
        cfg, attn, comm = self.config, self.input_attention, self.communication
        T, B, R, _ = x.shape
        K, H = cfg.num_units, cfg.unit_size
        lstm = cfg.cell == "lstm"
        # the products over all T*B rows: through oneDNN where it runs them (rims_rl.matmul)
        keys, values = attn.project(x + self.row_embedding, matmul.linear)  # [T, B, 1, 1, *]
        w_in, w_state, b_state, b_in, w_comm, w_out, b_out, doubled_out, init = self._kernel_weights(x)
        gate_inputs = matmul.matmul(values.reshape(T * B, -1), w_in).view(T, B, K, -1)  # [T, B, K, G]
        empty = x.new_empty(0)
        sizes = [comm.num_heads, comm.key_size, comm.value_size] if comm is not None else [1, 1, 1]
        start_bytes = (torch.zeros(T, B, dtype=torch.uint8) if starts is None
                       else starts.view(T, B).to(torch.uint8).contiguous())
        block = cfg.block_inactive_grad and K > cfg.k and torch.is_grad_enabled()
        flags = [int(lstm), cfg.k, int(cfg.selection == "across"), int(cfg.across_renormalise),
                 int(comm is not None), int(cfg.comm_inactive == "kept"), int(block)] + sizes
        flags += [kernel.SMALL_PRODUCT, int(matmul.uses_onednn(x))]
        out, c_final, mask, probs, att = kernel.run(
            h_state[0], h_state[1] if lstm else empty, gate_inputs, keys.reshape(T, B, -1).contiguous(),
            w_state, b_state, b_in, w_comm, w_out, b_out, init, start_bytes, flags, doubled_out)
        final = (out[-1].transpose(0, 1),) + ((c_final.transpose(0, 1),) if lstm else ())
        info = self._info(mask if cfg.k < K else None, probs.view(T, K, B, 1, 1),
                          att if comm is not None else None, T, B, R, x)
        return out.permute(0, 2, 1, 3).reshape(T, B, K * H), final, info

    # ------------------------------------------------------------------ steps
    def _prepare(self, x: Tensor) -> "_Sequence":
        """Everything that does not depend on the recurrent state, for all T steps at once."""
        T, B, R, _ = x.shape
        cell, attn, comm = self.cell, self.input_attention, self.communication
        K, G = self.config.num_units, cell.gate_size
        comm_products = comm.step_products() if comm is not None else None
        if attn is None:
            gates = torch.matmul(x.reshape(T * B, R * self.input_size), cell.input_to_gates.weight)
            gates = (gates + cell.input_to_gates.bias).view(K, T, B, G)
            return _Sequence(StepProduct(cell.hidden_to_gates.weight, cell.hidden_to_gates.bias), None, None, False,
                             gates.unbind(1), None, comm_products)
        x = x + self.row_embedding
        keys, values = attn.project(x)  # [T, B, R, heads, *]
        # Fused per-RIM product of the state: [hidden-to-gates | queries].
        w_state = torch.cat([cell.hidden_to_gates.weight, attn.query.weight], dim=-1)
        b_gates = cell.hidden_to_gates.bias
        folded = self._fold_single_row and R == 1
        sum_gates = folded and self.config.cell == "lstm"
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
            step_inputs = torch.matmul(v, w_in).view(heads, K, T, B, G).permute(2, 1, 3, 0, 4)
        else:
            step_inputs = values
        b_in = None if sum_gates else cell.input_to_gates.bias
        return _Sequence(StepProduct(w_state, b_state), keys.unbind(0), step_inputs.unbind(0), folded, None, b_in,
                         comm_products)

    def _step(self, state: State, inputs: tuple[Tensor | None, Tensor | None, Tensor | None], seq: "_Sequence",
              block: bool, fused: bool = False) -> tuple[State, Tensor | None, Tensor | None, Tensor | None]:
        """One RIMs step on unit-major states [K, B, H]; ``fused``: run it as ``rims_rl.fused`` (see _fused_ok).

        Returns (new state, mask [K, B] or None (all active), attention on the rows [K, B, heads, R]
        or None, communication attention [K(query), K(key), B, heads] or None).
        """
        cfg, cell, attn, comm = self.config, self.cell, self.input_attention, self.communication
        K, B, _ = state[0].shape
        G = cell.gate_size
        keys, values, input_gates = inputs
        if fused:
            comm_qkv, comm_out = seq.comm_products
            tensors = (state[0], state[1] if len(state) > 1 else None, values, keys, seq.state_product.weight,
                       seq.state_product.bias, seq.b_in, comm_qkv.weight, comm_out.weight, comm_out.bias)
            sizes = (comm.num_heads, comm.key_size, comm.value_size)
            if torch.is_grad_enabled():
                stores = (seq.state_product.store, comm_qkv.store, comm_out.store)
                h, c, mask, probs, comm_attention = FusedStep.apply(*tensors, stores, cfg.k, block, *sizes)
            else:  # the same forward ops, without an autograd node
                (h, c, mask, probs, comm_attention), _, _ = fused_step(*tensors, cfg.k, *sizes)
            return ((h, c) if c is not None else (h,)), mask, probs, comm_attention
        hq = seq.state_product(state[0])
        mask = mask3 = probs_info = None
        if attn is None:
            gates_x, gates_h = input_gates, hq
        else:
            gates_h, query = hq.split([G, hq.shape[-1] - G], dim=-1)
            scores = attn.scores(query, keys)
            probs, logits = attn.probabilities(scores)
            probs_info = probs
            if cfg.k < K:
                mask = top_k_mask(logits, cfg.k)
                mask3 = mask.unsqueeze(-1)
                if cfg.selection == "across":  # inactive RIMs read nothing
                    probs = attn.masked_probabilities(scores, mask, cfg.across_renormalise)
            probs = attn.dropout(probs)
            if not seq.folded:
                gates_x = cell.input_to_gates(attn.read(probs, values))
            else:  # read = p * v, so the input gates are p * (v W_ih), precomputed for all steps
                # LSTM (b_in None): add straight onto the hidden gates; GRU: keep the two parts apart.
                if attn.num_heads == 1:
                    base = gates_h if seq.b_in is None else seq.b_in
                    gates_x = torch.addcmul(base, probs.view(K, B, 1), values.view(K, B, G))
                else:
                    gates_x = torch.matmul(probs.view(K, B, 1, -1), values).view(K, B, G)
                    gates_x = gates_x + (gates_h if seq.b_in is None else seq.b_in)
                if seq.b_in is None:  # gates_x already holds the sum
                    gates_h = None
        new = cell(gates_x, gates_h, state)
        h_new = new[0]
        if block:  # no gradient into an inactive RIM's tentative update (incl. via communication)
            h_new = torch.where(mask3, h_new, h_new.detach())
        comm_attention = None
        if comm is not None:
            source = None
            if cfg.comm_inactive == "kept" and mask3 is not None:  # inactive RIMs: keys/values of the kept state
                source = torch.where(mask3, h_new, state[0])
            h_new, comm_attention = comm(h_new, seq.comm_products, source)
        new = (h_new,) + tuple(new[1:])
        if mask3 is not None:  # inactive RIMs keep their state bit-for-bit
            new = tuple(torch.where(mask3, n, s) for n, s in zip(new, state))
        return new, mask, probs_info, comm_attention

    def _fused_ok(self, seq: "_Sequence") -> bool:
        """Whether the fused step (``rims_rl.fused``) covers this configuration (else the general,
        op-by-op step runs); with gradients on, its per-step products must defer their weight grads."""
        cfg = self.config
        if not (self.backend != "reference" and seq.folded and self.input_attention is not None
                and self.communication is not None and cfg.selection == "null" and cfg.num_input_heads == 1
                and cfg.comm_inactive == "tentative"
                and cfg.k < cfg.num_units):
            return False
        if self.training and (cfg.input_dropout > 0 or cfg.comm_dropout > 0):
            return False
        if not torch.is_grad_enabled():
            return True
        return seq.state_product.deferred and all(p.deferred for p in seq.comm_products)

    # ---------------------------------------------------------------- helpers
    def _info(self, masks: Tensor | None, probs: Tensor | None, comm: Tensor | None, T: int, B: int, R: int,
              x: Tensor) -> RIMsInfo:
        """masks [T, K, B] (None: all active), probs [T, K, B, heads, R] (None: no input attention),
        comm [T, Kq, Kk, B, heads] (None: no communication) -> RIMsInfo."""
        K = self.config.num_units
        with torch.no_grad():
            if masks is not None:
                mask = masks.transpose(1, 2)  # [T, B, K]
            else:
                mask = torch.ones(T, B, K, dtype=torch.bool, device=x.device)
            if self.input_attention is not None:
                input_attention = self.input_attention.info_attention(probs).transpose(1, 2)
            else:
                input_attention = torch.full((T, B, K, R + 1), 1.0 / R, dtype=x.dtype, device=x.device)
                input_attention[..., 0] = 0.0
            comm_attention = None
            if comm is not None:
                # [T, Kq, Kk, B, heads] -> [T, B, heads, Kq, Kk], inactive query rows zeroed
                comm_attention = comm.permute(0, 3, 4, 1, 2) * mask[:, :, None, :, None]
        return RIMsInfo(mask, input_attention.detach(), None if comm_attention is None else comm_attention.detach())

    def _check_input(self, x: Tensor) -> Tensor:
        """x [T, B, D] or [T, B, R, D] -> [T, B, R, D]."""
        if not isinstance(x, Tensor) or x.dim() not in (3, 4) or x.shape[-1] != self.input_size:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"RIMs input x of shape {shape} is invalid: valid shapes are [T, B, {self.input_size}] "
                             f"or [T, B, R, {self.input_size}]")
        if x.dim() == 3:
            x = x.unsqueeze(2)
        R = x.shape[2]
        expected = self.num_input_rows if self.num_input_rows is not None else (None if self.input_attention else 1)
        if expected is not None and R != expected:
            raise ValueError(f"RIMs input x with R={R} rows is invalid: this core was built for "
                             f"num_input_rows={expected}")
        if not x.is_floating_point():
            x = x.float()
        return x

    def _check_state(self, state: State, B: int) -> State:
        K, H = self.config.num_units, self.config.unit_size
        n = self.cell.num_states
        if (not isinstance(state, (tuple, list)) or len(state) != n
                or any(not isinstance(s, Tensor) or tuple(s.shape) != (B, K, H) for s in state)):
            got = [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in state] \
                if isinstance(state, (tuple, list)) else type(state).__name__
            raise ValueError(f"RIMs state {got} is invalid: valid is a tuple of {n} tensors of shape "
                             f"[B={B}, K={K}, H={H}] ({self.config.cell} cell)")
        return state

    @staticmethod
    def _check_starts(episode_starts: Tensor | None, T: int, B: int, x: Tensor) -> tuple[list[bool], Tensor | None]:
        """-> (per step: any reset?, starts as [T, 1, B, 1] bools)."""
        if episode_starts is None:
            return [False] * T, None
        starts = torch.as_tensor(episode_starts, device=x.device)
        if tuple(starts.shape) != (T, B):
            raise ValueError(f"RIMs episode_starts of shape {tuple(starts.shape)} is invalid: valid shape is "
                             f"[T={T}, B={B}]")
        starts = starts != 0
        return starts.any(dim=1).tolist(), starts.view(T, 1, B, 1)
