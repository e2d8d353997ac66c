"""How PPO cuts each env's rollout into equal sequences for truncated BPTT (plain arithmetic, no torch:
the command line checks a config with it before anything heavy is imported)."""
from __future__ import annotations

from rims_rl.errors import UserError


def chunks_per_env(n_steps: int, n_envs: int, n_minibatches: int, max_length: int | None = None) -> int:
    """Smallest number of equal chunks per env rollout so that there are >= n_minibatches sequences
    and no chunk is longer than ``max_length`` steps (None: no cap).

    Raises UserError (one line) if no divisor of n_steps gives enough sequences, or max_length < 1.
    """
    if n_minibatches < 1:
        raise UserError(f"n_minibatches must be >= 1, got {n_minibatches}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise UserError(f"bptt_length={max_length!r} is invalid; valid: None or an int >= 1")
    for chunks in range(1, n_steps + 1):
        if n_steps % chunks == 0 and chunks * n_envs >= n_minibatches and (
            max_length is None or n_steps // chunks <= max_length
        ):
            return chunks
    raise UserError(
        f"n_minibatches={n_minibatches} is more than n_steps*n_envs={n_steps * n_envs}; "
        f"valid: 1..{n_steps * n_envs}"
    )
