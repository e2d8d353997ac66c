"""The ``rims-rl`` command line: it builds the parser from the command modules
(``agents.experiments.commands``), dispatches, and turns errors into exit codes; nothing else."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Sequence

from agents.experiments.commands import compare, demo, evaluate, presets, record, report, sweep, train, tune
from agents.experiments.commands.options import Formatter
from agents.experiments.outcomes import Interrupted, SweepFailed, TrainingDiverged
from rims_rl.errors import UserError, first_line

PROG = "rims-rl"
DESCRIPTION = """Recurrent Independent Mechanisms (RIMs) for reinforcement learning: train, sweep and tune runs,
evaluate them on shifted environments, compare them with confidence intervals, report, record episodes.

With no arguments it runs the main job (demo): a small RIMs agent and an LSTM agent on the built-in
distractor task, evaluated across the shift ladder and compared. `rims-rl COMMAND --help` shows a
command's options."""
COMMANDS = {module.NAME: module for module in (train, sweep, tune, evaluate, compare, report, record, demo, presets)}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ONE line on stderr (exit code 2)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.subcommands: dict[str, argparse.ArgumentParser] = {}  # the top-level parser's, by name

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> _Parser:
    """The ``rims-rl`` parser with one subcommand per module of :data:`COMMANDS`."""
    parser = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=Formatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS.values():
        module.register(subparsers)
    parser.subcommands = dict(subparsers.choices)
    return parser


def parse_args(parser: _Parser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but an argument the subcommand does not know is reported by the
    subcommand's parser, so that the error points to its help (argparse leaves such extras to the
    top-level parser)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.subcommands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rims-rl`` / ``python train_agent.py``; returns the exit code.

    0 done; 1 training diverged (non-finite loss), some runs of a sweep failed, or a bug in rims-rl (its
    traceback is printed); 2 user error or an OS error such as a full disk, a read-only dir or too
    little memory (one line on stderr); 130 (SIGINT) or 143 (SIGTERM): training interrupted after
    saving a checkpoint.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(build_parser(), argv or ["demo"])
    if args.command is None:
        build_parser().print_help()
        return 2
    help_hint = f"(see {PROG} {args.command} --help)"
    try:
        COMMANDS[args.command].run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except UserError as e:
        print(f"{PROG}: error: {first_line(e)} {help_hint}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (`rims-rl presets | head -0`)
        _silence_stdout()
        print(f"{PROG}: error: output pipe closed", file=sys.stderr)
        return 2
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"{PROG}: error: {e.strerror or type(e).__name__}{where} {help_hint}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: out of memory; use smaller values (--reps, --episodes, --n-envs, network sizes)",
              file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{PROG}: error: input nested too deeply (a config or file that refers to itself?)", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside training (setup, evaluation): nothing to save
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (TrainingDiverged, SweepFailed) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except Exception:  # anything else is a bug: show where, so that it can be reported and fixed
        traceback.print_exc()
        print(f"{PROG}: this is a bug in rims-rl; please report it with the traceback above", file=sys.stderr)
        return 1
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail on a closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
