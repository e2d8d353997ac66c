"""``rims-rl record``: one episode as GIF or MP4 with the RIMs activation strip."""
from __future__ import annotations

import argparse
from typing import Any

from agents.experiments.commands.options import add_device, add_subcommand
from agents.experiments.config import EVAL_SEED

NAME = "record"


def register(subparsers: Any) -> None:
    """Add the ``record`` subcommand and its flags."""
    p = add_subcommand(subparsers, NAME, "record one episode with the RIMs activation strip",
                       "Play one episode and write it as GIF or MP4; under each frame a strip shows which RIMs were "
                       "active over the last steps (rows = RIMs, right = now).")
    p.add_argument("--model", required=True, help="a model file or a run dir")
    p.add_argument("--out", help="a .gif or .mp4 path (default: <run dir>/episode.gif)")
    p.add_argument("--shifts", help="shifts to apply, e.g. distractors=2")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of the env")
    p.add_argument("--deterministic", action="store_true", help="greedy actions")
    p.add_argument("--max-steps", type=int, default=500, help="stop after this many steps")
    p.add_argument("--fps", type=int, default=8, help="frames per second of the video")
    p.add_argument("--env", help="environment id (default: the run's config.yaml)")
    add_device(p, "torch device (auto = CUDA when torch sees a GPU, else cpu)", default="auto")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl record`` with the parsed ``args`` and say what the episode shows."""
    from agents.experiments.record import record_run

    out_path, info = record_run(args.model, out=args.out, shifts=args.shifts, seed=args.seed,
                                deterministic=args.deterministic, max_steps=args.max_steps, fps=args.fps, env=args.env,
                                device=args.device)
    strip = "with the RIMs activation strip" if info["has_strip"] else "(no activation strip: the core is not rims)"
    mission = f", mission {' / '.join(repr(m) for m in info['missions'])}" if info["missions"] else ""
    print(f"recorded {info['steps']} steps, return {info['return']:.3g}{mission}, {strip}: {out_path}")
