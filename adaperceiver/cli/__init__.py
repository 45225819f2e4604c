"""The ``adaperceiver`` command (also ``python -m adaperceiver``): subcommands ``demo``,
``sweep``, ``classify``, ``train`` and ``export-onnx``.

Each command module exposes ``register(subparsers)``, which adds its parser with
``set_defaults(func=run)``, ``run(args) -> int`` being the command. ``main`` runs it under
one error handler: bad input is one line on stderr and a non-zero exit, never a traceback
(argument errors exit 2, other errors 1; set ADAPERCEIVER_DEBUG=1 to see the traceback).

Only the module of the command being run is imported (``COMMANDS``): ``adaperceiver
--help``, an unknown command and a bare ``adaperceiver`` never import torch, and the
other commands appear in the help by their one-line summary.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .common import CliError

# command -> (its module, with register(subparsers), and the summary the top-level help shows)
COMMANDS = {
    "demo": ("adaperceiver.cli.demo", "the bundled cluttered-digits model at every budget "
             "(offline)"),
    "sweep": ("adaperceiver.cli.sweep", "accuracy against compute over a checkpoint's budget "
              "grid"),
    "classify": ("adaperceiver.cli.classify", "top-5 classes of images at a chosen budget"),
    "train": ("adaperceiver.cli.train", "train the bundled cluttered-digits recipe"),
    "export-onnx": ("adaperceiver.cli.export", "export one static configuration to an ONNX "
                    "graph"),
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: "<prog>: error: <message>"."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> Parser:
    """The parser with ``command``'s full arguments (its module imported) and every other
    command as its summary only."""
    parser = Parser(prog="adaperceiver", description="AdaPerceiver: one model, many compute "
                    "budgets (tokens, depth, FFN width, early exit).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 2000 else text[:2000] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
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
