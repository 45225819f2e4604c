"""The ``adaperceiver`` command (also ``python -m adaperceiver``): subcommands ``demo``,
``sweep``, ``classify``, ``train`` and ``export-onnx``.

Each command module exposes ``register(subparsers)``, which adds its parser with
``set_defaults(func=run)``, ``run(args) -> int`` being the command. ``main`` runs it under
one error handler: bad input is one line on stderr and a non-zero exit, never a traceback
(argument errors exit 2, other errors 1; set ADAPERCEIVER_DEBUG=1 to see the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import train
from ..onnx import export as export_onnx
from . import classify, demo, sweep
from .common import CliError

COMMANDS = (demo, sweep, classify, train, export_onnx)  # modules with register(subparsers)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: "<prog>: error: <message>"."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    parser = Parser(prog="adaperceiver", description="AdaPerceiver: one model, many compute "
                    "budgets (tokens, depth, FFN width, early exit).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 2000 else text[:2000] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = ["adaperceiver", *argv]
    prefix = f"adaperceiver {args.command}: error:"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{prefix} interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prefix} out of memory (try fewer or smaller inputs, or a smaller budget)",
              file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - every failure is one line, by design
        if os.environ.get("ADAPERCEIVER_DEBUG"):
            raise
        known = isinstance(error, (CliError, ValueError, TypeError, OSError, RuntimeError))
        kind = "" if known else f" internal error ({type(error).__name__}):"
        print(f"{prefix}{kind} {_one_line(error)}", file=sys.stderr)
        return 1
