"""RIMsConfig: the validated hyperparameters of a RIMs core."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import UserError

CELLS = ("lstm", "gru")
SELECTIONS = ("null", "across")
COMM_INACTIVE = ("tentative", "kept")


@dataclass(frozen=True)
class RIMsConfig:
    """Hyperparameters of :class:`rims_rl.RIMs` (paper notation in brackets).

    Sizes must be >= 1, dropouts in [0, 1). ``input_value_size=None`` means ``4 * unit_size``
    (paper Table 3). ``input_attention=False`` makes every RIM active, so it requires ``k == num_units``.
    Invalid values raise :class:`rims_rl.errors.UserError` naming the field, the bad value and the valid ones.
    """

    num_units: int = 6  # K (k_T): number of RIMs
    k: int = 4  # k (k_A): RIMs active per step
    unit_size: int = 64  # H: hidden size of one RIM
    cell: str = "lstm"  # "lstm" | "gru"
    input_key_size: int = 64
    input_value_size: int | None = None  # None -> 4 * unit_size
    num_input_heads: int = 1
    comm_key_size: int = 32
    comm_value_size: int = 32
    num_comm_heads: int = 4
    input_dropout: float = 0.0  # on input attention probabilities (paper: 0.1; use 0 for PPO)
    comm_dropout: float = 0.0  # on communication attention probabilities (paper: 0.1)
    selection: str = "null"  # "null" (paper) | "across" (authors' Atari code)
    across_renormalise: bool = True  # "across": top-k attention renormalised over the active RIMs (authors' code)
    comm_inactive: str = "tentative"  # communication keys/values of inactive RIMs: "tentative" (code) | "kept" (paper)
    communication: bool = True
    input_attention: bool = True
    block_inactive_grad: bool = True
    learned_initial_state: bool = True

    def __post_init__(self) -> None:
        for name in ("num_units", "k", "unit_size", "input_key_size", "num_input_heads",
                     "comm_key_size", "comm_value_size", "num_comm_heads"):
            _check_positive_int(name, getattr(self, name))
        if self.input_value_size is not None:
            _check_positive_int("input_value_size", self.input_value_size)
        if self.k > self.num_units:
            raise UserError(f"RIMsConfig.k={self.k} is invalid: valid values are 1..num_units={self.num_units}")
        if self.cell not in CELLS:
            raise UserError(f"RIMsConfig.cell={self.cell!r} is invalid: valid values are {', '.join(CELLS)}")
        if self.selection not in SELECTIONS:
            raise UserError(
                f"RIMsConfig.selection={self.selection!r} is invalid: valid values are {', '.join(SELECTIONS)}")
        if self.comm_inactive not in COMM_INACTIVE:
            raise UserError(f"RIMsConfig.comm_inactive={self.comm_inactive!r} is invalid: valid values are "
                            f"{', '.join(COMM_INACTIVE)}")
        for name in ("input_dropout", "comm_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise UserError(f"RIMsConfig.{name}={value!r} is invalid: valid values are floats in [0, 1)")
        for name in ("across_renormalise", "communication", "input_attention", "block_inactive_grad",
                     "learned_initial_state"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise UserError(f"RIMsConfig.{name}={value!r} is invalid: valid values are True, False")
        if not self.input_attention and self.k != self.num_units:
            raise UserError(
                f"RIMsConfig.k={self.k} is invalid with input_attention=False: all RIMs are active, "
                f"so the valid value is k=num_units={self.num_units}")

    @property
    def value_size(self) -> int:
        """The resolved input value size (``input_value_size`` or ``4 * unit_size``)."""
        return self.input_value_size if self.input_value_size is not None else 4 * self.unit_size

    def to_dict(self) -> dict:
        """The fields as a plain dict (e.g. for logging or YAML)."""
        return asdict(self)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"RIMsConfig.{name}={value!r} is invalid: valid values are integers >= 1")
