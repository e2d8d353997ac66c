"""``rims-rl evaluate``: a model across the shift ladder on paired episodes, into results files."""
from __future__ import annotations

import argparse
from typing import Any

from agents.experiments.commands.options import add_device, add_subcommand
from agents.experiments.config import DEFAULT_EPISODES, EVAL_ENVS, EVAL_SEED

NAME = "evaluate"


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "evaluate a model across shift levels",
                       "Evaluate a model on the unshifted env and on each shift setting, on paired episodes (episode "
                       "i of every setting and model is reset with seed SEED+i). Writes results.csv / results.json "
                       "(return, success rate, normalized score against a cached random-policy baseline, 95% CIs; "
                       "per-episode records), returns.png and TensorBoard scalars.")
    p.add_argument("--model", required=True, help="a model file or a run dir (uses model.zip, else the checkpoint)")
    p.add_argument("--shifts", nargs="+", default=["all"], metavar="SPEC",
                   help="settings: all, none, a shift name (every level) or name=level[,name=level]")
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                   help=f"episodes per setting ({DEFAULT_EPISODES}: a success rate's 95%% CI half-width <= 0.05)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="reset seed of episode 0 (episode i: SEED+i)")
    p.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampled ones")
    p.add_argument("--n-envs", type=int, default=EVAL_ENVS, help="sub-envs stepped at once (one batched predict "
                                                                 "per step)")
    p.add_argument("--out", help="output dir (default: <run dir>/eval)")
    p.add_argument("--env", help="environment id (default: the run's config.yaml)")
    add_device(p, "torch device (auto = CUDA when torch sees a GPU, else cpu)", default="auto")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl evaluate`` with the parsed ``args`` (it prints each setting, then the table)."""
    from agents.experiments.evaluation.evaluate import evaluate_run

    evaluate_run(args.model, shifts=args.shifts, episodes=args.episodes, seed=args.seed,
                 deterministic=args.deterministic, out=args.out, env=args.env, n_envs=args.n_envs, device=args.device)
