"""Forward+backward wall time of the RIMs core against torch.nn.LSTM(510) and torch.nn.GRU(510).

Same input for every model: x [T=128, B, 512] (requires grad, as behind a CNN), loss = sum of squares
of the outputs. Prints the median over repeats, in ms, and the ratio to nn.LSTM(510) measured in the
same run. RIMs: K=6, k=4, H=85 (K*H = 510), defaults otherwise. Also prints forward-only (no_grad)
figures for one step at a time (T=1, the rollout case).

    python benchmarks/bench_core.py [--quick] [--threads 2] [--batch-sizes 8 32] [--device cuda]
        [--paths auto fused reference]

``--paths``: which RIMs implementations to time (``RIMs.backend``; "auto" picks the compiled kernel
on CPU when it builds, else the Python fused step); each row names the path that ran.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rims_rl import RIMs, RIMsConfig
from rims_rl.rims import BACKENDS

T, D, K, KA, H = 128, 512, 6, 4, 85


class TorchRNN(nn.Module):
    """nn.LSTM / nn.GRU with the RIMs call signature (no resets, as in the timing of a plain sequence)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](D, K * H)

    def forward(self, x, state=None, episode_starts=None):
        out, state = self.rnn(x, state)
        return out, state, None


def models(paths: list[str], device: torch.device) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    result = {"nn.LSTM(510)": TorchRNN("lstm"), "nn.GRU(510)": TorchRNN("gru")}
    for cell in ("lstm", "gru"):
        for path in paths:
            core = RIMs(D, RIMsConfig(num_units=K, k=KA, unit_size=H, cell=cell))
            core.backend = path
            result[f"RIMs {cell} {path}"] = core
    return {name: model.to(device) for name, model in result.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: nn.Module, x: torch.Tensor, starts: torch.Tensor | None) -> float:
    """Seconds of one forward + backward over the whole sequence."""
    model.zero_grad(set_to_none=True)
    x.grad = None
    _sync(x.device)
    start = time.perf_counter()
    out = model(x, None, starts)[0]
    out.pow(2).sum().backward()
    _sync(x.device)
    return time.perf_counter() - start


@torch.no_grad()
def rollout_steps(model: nn.Module, x: torch.Tensor, steps: int) -> float:
    """Seconds per forward call with T=1 (what an agent does per environment step), mean over steps."""
    state = None
    _sync(x.device)
    start = time.perf_counter()
    for t in range(steps):
        _, state, _ = model(x[t:t + 1], state)
    _sync(x.device)
    return (time.perf_counter() - start) / steps


def measure(models: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms per model of (forward+backward over T, one T=1 forward). Models are run interleaved,
    one after the other in every repeat, so load from other processes hits all of them alike."""
    starts = torch.zeros(x.shape[0], x.shape[1], device=x.device)
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
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 15, --quick 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--paths", nargs="+", default=["auto"], choices=list(BACKENDS),
                        help="RIMs implementations to time (RIMs.backend; default: auto)")
    args = parser.parse_args()
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        parser.exit(2, f"bench_core.py: --device {args.device!r} is invalid here: valid values are cpu"
                       f"{', cuda' if torch.cuda.is_available() else ' (no CUDA device found)'}\n")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 15)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, T={T}, input {D}, "
          f"RIMs K={K} k={KA} H={H}, median of {repeats} interleaved runs")
    print(f"{'model':<22} {'B':>3} {'fwd+bwd ms':>11} {'/LSTM':>6} {'/GRU':>6} {'T=1 fwd ms':>11} {'/LSTM':>6}  path")
    for B in args.batch_sizes:
        x = torch.randn(T, B, D, requires_grad=True, device=device)
        timed = models(args.paths, device)
        results = measure(timed, x, repeats)
        lstm, gru = results["nn.LSTM(510)"], results["nn.GRU(510)"]
        for name, (train, rollout) in results.items():
            path = getattr(timed[name], "last_path", "") or ""
            print(f"{name:<22} {B:>3} {train:>11.1f} {train / lstm[0]:>6.2f} {train / gru[0]:>6.2f} "
                  f"{rollout:>11.3f} {rollout / lstm[1]:>6.2f}  {path}", flush=True)

if __name__ == "__main__":
    main()
