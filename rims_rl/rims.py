"""RIMs: the Recurrent Independent Mechanisms sequence module (see docs/core.md)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import fused, kernel, reference
from .attention import Communication, InputAttention
from .config import RIMsConfig
from .group import make_cell
from .reference import State


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


class RIMs(nn.Module):
    """A sequence of RIMs steps over ``x`` with resets at episode starts.

    ``forward(x [T, B, D] or [T, B, R, D], state, episode_starts [T, B])`` returns ``out [T, B, K*H]``,
    the final state (tuple of [B, K, H]: (h, c) for lstm, (h,) for gru) and a :class:`RIMsInfo`.
    ``output_size == K * H``.

    :param input_size: D, the size of one input row.
    :param config: the hyperparameters (:class:`RIMsConfig`; None: the defaults).
    :param num_input_rows: R if the input comes as R rows ``[T, B, R, D]`` with a fixed meaning per row
        (e.g. the positions of a CNN feature map): a learned positional embedding ``[R, D]`` is added
        to the rows, and inputs must have exactly R rows. None (default): one learned embedding
        ``[1, D]`` is added to every row (so a zero row differs from the null row); with input
        attention any number of rows is accepted (an unordered set), without it only one row.
    :param fold_single_row: a speed path for one input row (default True): the value-to-gate product of
        all T steps is computed before the loop, and each step only scales it by the attention. The
        values are the same, rounded differently. False reads first and applies the input-to-gate
        weights in every step, as for R > 1 rows; then only the reference step runs.
    """

    def __init__(self, input_size: int, config: RIMsConfig | None = None, num_input_rows: int | None = None,
                 fold_single_row: bool = True) -> None:
        super().__init__()
        config = RIMsConfig() if config is None else config
        if not isinstance(config, RIMsConfig):
            raise ValueError(f"RIMs config={config!r} is invalid: valid values are RIMsConfig instances")
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"RIMs input_size={input_size!r} is invalid: valid values are integers >= 1")
        if num_input_rows is not None and (
                isinstance(num_input_rows, bool) or not isinstance(num_input_rows, int) or num_input_rows < 1):
            raise ValueError(f"RIMs num_input_rows={num_input_rows!r} is invalid: valid values are None or integers >= 1")
        if not isinstance(fold_single_row, bool):
            raise ValueError(f"RIMs fold_single_row={fold_single_row!r} is invalid: valid values are True, False")
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
        self.fold_single_row = fold_single_row
        self.backend = "auto"
        self.last_path: str | None = None  # the path the last forward call ran (see ``backend``)

    @property
    def backend(self) -> str:
        """Which implementation runs the steps: ``"auto"`` (default: the fastest that covers the
        configuration and device: ``"cpp"``, else ``"fused"``, else ``"reference"``), ``"cpp"`` (the
        compiled sequence kernel, ``rims_rl.kernel``; raises if it is unavailable or does not cover the
        call), ``"fused"`` (at most the Python fused step, ``rims_rl.fused``) or ``"reference"``
        (``rims_rl.reference``: the readable op-by-op step, for every configuration, differentiable
        twice). ``last_path`` names the one the last call ran."""
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
        x = self._check_input(x)
        T, B, R, _ = x.shape
        state = self.initial_state(B) if state is None else self._check_state(state, B)
        h_state = tuple(s.to(x.dtype).transpose(0, 1).contiguous() for s in state)  # [K, B, H]
        resets, starts = self._check_starts(episode_starts, T, B, x)
        if self._kernel_runs(x):
            self.last_path = "cpp"
            result = kernel.forward(self, x, h_state, self._initial(), starts)
        else:
            seq = reference.prepare(self, x, self.fold_single_row)
            use_fused = self.backend != "reference" and fused.covers(self, seq)
            self.last_path = "fused" if use_fused else "reference"
            initial = [s.to(x.dtype).unsqueeze(1) for s in self._initial()]  # [K, 1, H]
            result = reference.run(self, seq, h_state, initial, resets, starts,
                                   fused.step if use_fused else reference.step)
        return result.out, result.final, self._info(result.masks, result.probs, result.comm_attention, T, B, R, x)

    def _kernel_runs(self, x: Tensor) -> bool:
        """Whether the compiled sequence kernel runs this call (``backend`` "auto" or "cpp")."""
        if self.backend not in ("auto", "cpp"):
            return False
        reason = kernel.unsupported_reason(self, x)
        if reason is not None and self.backend == "cpp":
            raise RuntimeError(f"RIMs backend='cpp' cannot run this call: {reason}")
        return reason is None

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
