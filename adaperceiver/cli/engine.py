"""``--engine`` and ``--precision`` for the commands that run the model (classify, sweep, demo).

A command adds the flags with ``add_engine_arguments(parser)`` and, once it has loaded its
model and parsed its budget, calls ``make_runner(args, model, **budget)``: a
``adaperceiver.engine.Runner`` (images -> logits and exit depths) whose ``engine`` and
``precision`` attributes are what the command should record with its results. An
unsupported combination (``--engine torch --precision int8``) is a one-line ``CliError``
naming both flags and what is allowed.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..engine import ENGINES, PRECISIONS, SUPPORTED, Runner, runner
from .common import CliError


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine`` (default torch) and ``--precision`` (default fp32) to ``parser``."""
    parser.add_argument("--engine", choices=ENGINES, default="torch",
                        help="what runs the model: torch (eager, default), compiled "
                             "(torch.compile, a minute per budget), onnxruntime (the budget "
                             "exported to ONNX) or auto (the faster of torch and onnxruntime "
                             "measured on this machine, for fp32)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default); bf16 (torch autocast, engine torch or auto); "
                             "int8 (quantized weight matmuls, engine onnxruntime or auto)")


def make_runner(args: argparse.Namespace, model: Any, **budget: Any) -> Runner:
    """The runner of ``args.engine`` / ``args.precision`` for ``model`` at ``budget``."""
    engine, precision = args.engine, args.precision
    if engine != "auto" and precision not in SUPPORTED[engine]:
        allowed = "; ".join(f"{e}: {', '.join(p)}" for e, p in SUPPORTED.items())
        raise CliError(f"--precision {precision} is not available with --engine {engine} "
                       f"(allowed: {allowed})")
    return runner(model, engine=engine, precision=precision, **budget)
