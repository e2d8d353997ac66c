"""What the subcommands' parsers share: the help formatter and the help of an option read from the config."""
from __future__ import annotations

import argparse
import textwrap
from typing import Any

from agents.checks import MATCHES
from agents.experiments.config import DEFAULT_PRESET, get_value, list_presets, load_preset
from agents.experiments.devices import DEVICES


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show ``(default: X)`` for every option that has a default (options read from the config say so)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool) and not action.default:
            return action.help or ""
        return super()._get_help_string(action)


def from_config(help_text: str, key: str, preset: str = DEFAULT_PRESET) -> str:
    """Help for an option whose default comes from the config, quoting the value of ``preset`` (the
    command's default config)."""
    value = get_value(load_preset(preset), key)
    shown = "the built-in distractor task" if key == "env" and value is None else ("none" if value is None else value)
    return f"{help_text} (default: the config's `{key}`; {preset} preset: {shown})"


def add_subcommand(subparsers: Any, name: str, help_text: str, description: str | None = None
                   ) -> argparse.ArgumentParser:
    """The parser of the subcommand ``name``, with its one-line help and its description (wrapped to 100 columns)."""
    return subparsers.add_parser(name, help=help_text, formatter_class=Formatter,
                                 description=textwrap.fill(description, width=100) if description else None)


def presets() -> str:
    """The preset names, for help texts."""
    return ", ".join(list_presets())


def add_hidden_alias(parser: argparse.ArgumentParser, alias: str, action: argparse.Action) -> None:
    """Accept ``alias`` as a second spelling of the option ``action`` without showing it in ``--help``.

    Older command lines keep working while every subcommand shows one spelling of the same flag
    (``demo --cores`` is ``--core`` as in ``train`` and ``sweep``). Only plain ``store`` options."""
    parser.add_argument(alias, dest=action.dest, nargs=action.nargs, type=action.type, choices=action.choices,
                        metavar=action.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_timesteps(parser: argparse.ArgumentParser, what: str = "environment steps per run (all sub-envs together)",
                  note: str = "", preset: str = DEFAULT_PRESET) -> None:
    """The ``--timesteps`` option (config key ``timesteps``), its help stating where training stops.

    :param what: what the number counts in this command
    :param note: said after the budget rule (e.g. how a resumed run ends)
    :param preset: the command's default config, whose value the help quotes
    """
    rule = ("as in SB3, training stops at the first rollout boundary (a multiple of ppo.n_steps x n_envs "
            "steps) at or past it")
    parser.add_argument("--timesteps", type=int, help=from_config(f"{what}; {rule}{note}", "timesteps", preset))


def add_n_envs(parser: argparse.ArgumentParser, preset: str = DEFAULT_PRESET) -> None:
    """The ``--n-envs`` option of training (config key ``n_envs``; ``preset``: the command's default config)."""
    parser.add_argument("--n-envs", type=int, help=from_config("parallel environments of each run", "n_envs", preset))


def add_device(parser: argparse.ArgumentParser, help_text: str, **kwargs) -> None:
    """The ``--device`` option (``kwargs``: e.g. its default)."""
    parser.add_argument("--device", metavar="|".join(DEVICES), help=help_text, **kwargs)


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable ``--set KEY=VALUE`` option (into ``args.overrides``)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def add_label_and_match(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """The ``--label`` (config key ``label``) and ``--match`` (config key ``match``) options.

    ``several``: the command takes several labels (a sweep or tune picks variants of its grid file)."""
    if several:
        parser.add_argument("--label", nargs="+", metavar="LABEL",
                            help="the label of the runs of one --core (their dirs <logdir>/<env>/<label>/seed<N>, "
                                 "their name in compare and report), or the labels of the grid file to run "
                                 "(default: every label of the grid file, else the core's name)")
    else:
        parser.add_argument("--label", help=from_config("a name for this variant of the config (one --core): its "
                                                        "run dirs <logdir>/<env>/<label>/seed<N> and its name in "
                                                        "compare and report; none = the core's name", "label"))
    parser.add_argument("--match", choices=MATCHES, help=from_config(
        "size lstm/gru against the RIMs core: state (K x H units) or params (core parameters within 5%%); "
        "none: cores.<core>.hidden_size", "match"))


def add_bootstrap(parser: argparse.ArgumentParser, reps_help: str) -> None:
    """The ``--reps`` and ``--seed`` options of the bootstrap."""
    parser.add_argument("--reps", type=int, default=2000, help=reps_help)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
