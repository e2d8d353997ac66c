"""Forward+backward wall time of the RIMs core against torch.nn.LSTM(510) and torch.nn.GRU(510).

Same input for every model: x [T=128, B, 512] (requires grad, as behind a CNN), loss = sum of squares
of the outputs. Prints the median over repeats, in ms, and the ratio to nn.LSTM(510) measured in the
same run. RIMs: K=6, k=4, H=85 (K*H = 510), defaults otherwise. Also prints forward-only (no_grad)
figures for one step at a time (T=1, the rollout case).

    python benchmarks/bench_core.py [--quick] [--threads 2] [--batch-sizes 8 32]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rims_rl import RIMs, RIMsConfig

T, D, K, KA, H = 128, 512, 6, 4, 85


class TorchRNN(nn.Module):
    """nn.LSTM / nn.GRU with the RIMs call signature (no resets, as in the timing of a plain sequence)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](D, K * H)

    def forward(self, x, state=None, episode_starts=None):
        out, state = self.rnn(x, state)
        return out, state, None


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "nn.LSTM(510)": TorchRNN("lstm"),
        "nn.GRU(510)": TorchRNN("gru"),
        "RIMs lstm": RIMs(D, RIMsConfig(num_units=K, k=KA, unit_size=H, cell="lstm")),
        "RIMs gru": RIMs(D, RIMsConfig(num_units=K, k=KA, unit_size=H, cell="gru")),
    }


def train_step(model: nn.Module, x: torch.Tensor, starts: torch.Tensor | None) -> float:
    """Seconds of one forward + backward over the whole sequence."""
    model.zero_grad(set_to_none=True)
    x.grad = None
    start = time.perf_counter()
    out = model(x, None, starts)[0]
    out.pow(2).sum().backward()
    return time.perf_counter() - start


@torch.no_grad()
def rollout_steps(model: nn.Module, x: torch.Tensor, steps: int) -> float:
    """Seconds per forward call with T=1 (what an agent does per environment step), mean over steps."""
    state = None
    start = time.perf_counter()
    for t in range(steps):
        _, state, _ = model(x[t:t + 1], state)
    return (time.perf_counter() - start) / steps


def measure(models: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms per model of (forward+backward over T, one T=1 forward). Models are run interleaved,
    one after the other in every repeat, so load from other processes hits all of them alike."""
    starts = torch.zeros(x.shape[0], x.shape[1])
    train = {name: [] for name in models}
    rollout = {name: [] for name in models}
    for i in range(repeats + 2):
        for name, model in models.items():
            seconds = train_step(model, x, starts if name.startswith("RIMs") else None)
            step_seconds = rollout_steps(model, x, 32)
            if i >= 2:  # two warm-up rounds
                train[name].append(seconds)
                rollout[name].append(step_seconds)
    return {name: (1000 * statistics.median(train[name]), 1000 * statistics.median(rollout[name]))
            for name in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 15
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, T={T}, input {D}, "
          f"RIMs K={K} k={KA} H={H}, median of {repeats} interleaved runs")
    print(f"{'model':<14} {'B':>3} {'fwd+bwd ms':>11} {'/LSTM':>6} {'/GRU':>6} {'T=1 fwd ms':>11} {'/LSTM':>6}")
    for B in args.batch_sizes:
        x = torch.randn(T, B, D, requires_grad=True)
        results = measure(models(), x, repeats)
        lstm, gru = results["nn.LSTM(510)"], results["nn.GRU(510)"]
        for name, (train, rollout) in results.items():
            print(f"{name:<14} {B:>3} {train:>11.1f} {train / lstm[0]:>6.2f} {train / gru[0]:>6.2f} "
                  f"{rollout:>11.3f} {rollout / lstm[1]:>6.2f}")

if __name__ == "__main__":
    main()
