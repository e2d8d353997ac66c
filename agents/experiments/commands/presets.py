"""``rims-rl presets``: the preset names, or one preset's YAML."""
from __future__ import annotations

import argparse
from typing import Any

from agents.experiments.commands.options import add_subcommand
from agents.experiments.config import PRESET_DIR, list_presets, load_preset

NAME = "presets"


def register(subparsers: Any) -> None:
    """Add the ``presets`` subcommand and its argument."""
    p = add_subcommand(subparsers, NAME, "list the presets, or print one")
    p.add_argument("name", nargs="?", help="a preset to print as YAML")


def run(args: argparse.Namespace) -> None:
    """Run ``rims-rl presets`` with the parsed ``args``."""
    show_presets(args.name)


def show_presets(name: str | None = None) -> None:
    """Print the preset names (with their first comment line), or the YAML text of one preset."""
    if name is not None:
        load_preset(name)  # UserError for an unknown name
        print((PRESET_DIR / f"{name}.yaml").read_text(), end="")
        return
    for preset in list_presets():
        first = (PRESET_DIR / f"{preset}.yaml").read_text().splitlines()[0].lstrip("# ")
        print(f"{preset:10s} {first}")
