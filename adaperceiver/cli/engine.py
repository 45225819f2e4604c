"""``--engine`` and ``--precision`` for the commands that run the model (classify, sweep, demo).

A command adds the flags with ``add_engine_arguments(parser)`` and, once it has loaded its
model and parsed its budget, calls ``make_runner(args, model, **budget)``: a
``adaperceiver.engine.Runner`` (images -> logits and exit depths) whose ``engine`` and
``precision`` attributes are what the command should record with its results. An
unsupported combination (``--engine torch --precision int8``) is a one-line ``CliError``
naming both flags and what is allowed.

The commands that evaluate the whole anytime grid (sweep, demo: every N x depth x width
from one anytime pass per width) add the flags with ``grid=True`` and check them with
``grid_engine(args, command)``: the grid runs on the torch model (fp32, bf16 autocast) or
on ONNX Runtime (fp32, int8: one exported anytime graph per width,
``adaperceiver.engine.anytime_model``), ``GRID_SUPPORTED``; ``auto`` is torch there, or
onnxruntime for int8. ``compiled`` (one static budget per compilation) is refused.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..config import ENGINES, GRID_SUPPORTED, PRECISIONS, SUPPORTED
from .common import CliError

if TYPE_CHECKING:
    from ..engine import Runner


def add_engine_arguments(parser: argparse.ArgumentParser, *, grid: bool = False) -> None:
    """Add ``--engine`` (default torch) and ``--precision`` (default fp32) to ``parser``;
    ``grid``: the help of a command that evaluates the anytime grid (``grid_engine``)."""
    if grid:
        parser.add_argument("--engine", choices=ENGINES, default="torch",
                            help="what computes the budget grid: torch (default; one anytime "
                                 "pass of the model per width), onnxruntime (one exported "
                                 "anytime graph per width, run by ONNX Runtime on the CPU) or "
                                 "auto (torch; onnxruntime for int8); compiled runs one static "
                                 "budget per compilation and is refused here: use "
                                 "'adaperceiver classify --engine compiled' for one budget")
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="fp32 (default); bf16 (torch autocast of the matrix products, "
                                 "weights float32; engine torch); int8 (weight matmuls "
                                 "dynamically quantized; engine onnxruntime)")
        return
    parser.add_argument("--engine", choices=ENGINES, default="torch",
                        help="what runs the model: torch (eager, default), compiled "
                             "(torch.compile, a minute per budget), onnxruntime (the budget "
                             "exported to ONNX) or auto (the faster of torch and onnxruntime "
                             "measured on this machine, for fp32)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default); bf16 (torch autocast, engine torch, compiled "
                             "or auto); "
                             "int8 (quantized weight matmuls, engine onnxruntime or auto)")


def make_runner(args: argparse.Namespace, model: Any, **budget: Any) -> Runner:
    """The runner of ``args.engine`` / ``args.precision`` for ``model`` at ``budget``."""
    from ..engine import runner

    engine, precision = args.engine, args.precision
    if engine != "auto" and precision not in SUPPORTED[engine]:
        allowed = "; ".join(f"{e}: {', '.join(p)}" for e, p in SUPPORTED.items())
        raise CliError(f"--precision {precision} is not available with --engine {engine} "
                       f"(allowed: {allowed})")
    return runner(model, engine=engine, precision=precision, **budget)


def grid_engine(args: argparse.Namespace, command: str) -> str:
    """The engine that evaluates ``command``'s anytime grid for ``args.engine`` /
    ``args.precision`` (auto: torch, onnxruntime for int8), or a one-line ``CliError``
    naming what is allowed."""
    engine = args.engine
    if engine == "auto":
        engine = "onnxruntime" if args.precision == "int8" else "torch"
    if args.precision not in GRID_SUPPORTED.get(engine, ()):
        allowed = "; ".join(f"--engine {e} with --precision {' or '.join(p)}"
                            for e, p in GRID_SUPPORTED.items())
        raise CliError(f"{command}: --engine {args.engine} --precision {args.precision} cannot "
                       f"evaluate the budget grid (one anytime pass per width); allowed: "
                       f"{allowed} (auto: torch, onnxruntime for int8); for one budget on "
                       "another engine use 'adaperceiver classify'")
    return engine
