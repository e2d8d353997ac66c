"""The copying task (Goyal et al. 2019, §4.1) sized for 2 CPU cores: RIMs(6, 4) against an LSTM of
about the same number of parameters.

A sequence of 10 random symbols (1..8) is followed by `gap` blanks (0), then a delimiter (9) and 9
more blanks; during the last 10 steps the model must output the 10 symbols. Trained on one gap,
tested on a longer one. Prints, per model, the cross-entropy over the 10 recall steps (nats per
symbol, the hard part; the loss over the whole sequence divides this by (gap+20)/10) and the
recall accuracy, on the training gap and on the test gap.

    python benchmarks/copying.py [--quick] [--train-gap 20] [--test-gap 100] [--steps 1500]
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn
import torch.nn.functional as F

from rims_rl import RIMs, RIMsConfig

NUM_SYMBOLS, COPY_LENGTH = 8, 10
BLANK, DELIMITER = 0, NUM_SYMBOLS + 1
VOCAB = NUM_SYMBOLS + 2


def copying_batch(batch_size: int, gap: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (one-hot inputs [T, B, VOCAB], targets [T, B]) with T = gap + 2 * COPY_LENGTH."""
    T = gap + 2 * COPY_LENGTH
    symbols = torch.randint(1, NUM_SYMBOLS + 1, (COPY_LENGTH, batch_size), generator=generator)
    tokens = torch.full((T, batch_size), BLANK)
    tokens[:COPY_LENGTH] = symbols
    tokens[gap + COPY_LENGTH] = DELIMITER
    targets = torch.full((T, batch_size), BLANK)
    targets[-COPY_LENGTH:] = symbols
    return F.one_hot(tokens, VOCAB).float(), targets


class Sequence(nn.Module):
    """A recurrent core followed by a linear read-out of the symbol at every step."""

    def __init__(self, core: nn.Module, core_size: int) -> None:
        super().__init__()
        self.core, self.head = core, nn.Linear(core_size, NUM_SYMBOLS + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.core(x)[0]
        return self.head(out)


def build(name: str, unit_size: int, lstm_size: int) -> nn.Module:
    torch.manual_seed(0)
    if name == "RIMs":
        cfg = RIMsConfig(num_units=6, k=4, unit_size=unit_size, cell="lstm")
        return Sequence(RIMs(VOCAB, cfg), 6 * unit_size)
    return Sequence(nn.LSTM(VOCAB, lstm_size), lstm_size)


def recall_metrics(model: nn.Module, gap: int, batches: int, batch_size: int, seed: int) -> tuple[float, float]:
    """(cross-entropy in nats per recalled symbol, recall accuracy) on fresh sequences."""
    generator = torch.Generator().manual_seed(seed)
    total_ce, total_correct, count = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for _ in range(batches):
            x, y = copying_batch(batch_size, gap, generator)
            logits = model(x)[-COPY_LENGTH:]
            target = y[-COPY_LENGTH:]
            total_ce += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                        reduction="sum").item()
            total_correct += (logits.argmax(-1) == target).sum().item()
            count += target.numel()
    model.train()
    return total_ce / count, total_correct / count


def train(model: nn.Module, gap: int, steps: int, batch_size: int, lr: float, seed: int, log_every: int = 0) -> float:
    """Adam on the cross-entropy of all steps; returns seconds. log_every > 0 prints the training loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for step in range(steps):
        x, y = copying_batch(batch_size, gap, generator)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"  step {step + 1}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (not converged)")
    parser.add_argument("--train-gap", type=int, default=20)
    parser.add_argument("--test-gap", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unit-size", type=int, default=32, help="H of each of the 6 RIMs")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=0, help="print the training loss every N steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = 60 if args.quick else args.steps
    rims_params = sum(p.numel() for p in build("RIMs", args.unit_size, 1).parameters())
    # LSTM with about as many parameters: 4 * (h * (VOCAB + h) + 2h) + 9 * (h + 1) ~= rims_params
    a, b = 4.0, 4.0 * (VOCAB + 2) + 9.0
    lstm_size = int((-b + math.sqrt(b * b + 4 * a * (rims_params - 9))) / (2 * a))
    print(f"copying: train gap {args.train_gap}, test gap {args.test_gap}, {steps} Adam steps of "
          f"batch {args.batch_size}, lr {args.lr}, {torch.get_num_threads()} threads")
    print(f"{'model':<22} {'params':>7} {'train CE':>9} {'train acc':>9} {'test CE':>8} {'test acc':>8} {'time s':>7}")
    for name in ("RIMs", "LSTM"):
        model = build(name, args.unit_size, lstm_size)
        seconds = train(model, args.train_gap, steps, args.batch_size, args.lr, seed=1, log_every=args.log_every)
        train_ce, train_acc = recall_metrics(model, args.train_gap, 4, 64, seed=2)
        test_ce, test_acc = recall_metrics(model, args.test_gap, 4, 64, seed=3)
        label = f"RIMs(6,4) H={args.unit_size}" if name == "RIMs" else f"LSTM({lstm_size})"
        params = sum(p.numel() for p in model.parameters())
        print(f"{label:<22} {params:>7} {train_ce:>9.3f} {train_acc:>9.3f} {test_ce:>8.3f} {test_acc:>8.3f} "
              f"{seconds:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
