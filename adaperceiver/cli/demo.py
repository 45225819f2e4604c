"""``adaperceiver demo``: the bundled digits model on its held-out test split, over every
compute budget (tokens x depth x width, and confidence early exit), offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .common import CliError
from .dataset import load_data
from .device import place
from .distributed import World
from .evaluation import make_grid
from .streaming import Settings
from .sweep import evaluate, measure, report

BATCH = 64


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)  # an 8 x 8 model: more threads only add overhead
    png = Path(args.out)
    if not png.parent.is_dir():
        raise CliError(f"--out {png}: the directory {png.parent} does not exist")
    loaded = checkpoint.load(None)
    data = load_data("digits", loaded)
    accuracy = loaded.metadata.get("test_accuracy", {}).get("min_over_grid")
    header = [f"bundled model {loaded.source}: "
              f"{sum(p.numel() for p in loaded.model.parameters()):,} parameters, trained on the "
              "UCI digits train split" + (f" (lowest test accuracy over the grid at training: "
                                          f"{100 * accuracy:.2f}%)" if accuracy is not None
                                          else ""),
              f"evaluated on {len(data)} held-out test digits at every budget"]
    placement, world = place("cpu", "fp32", World()), World()
    c = loaded.model.config
    evaluation, _ = evaluate(loaded, data, make_grid(c, c["img_size"]), placement, world,
                             Settings(batch_size=BATCH, progress=False))
    timed_on = measure(loaded, data, evaluation, placement, BATCH, 1, progress=False)
    report(evaluation, png, "AdaPerceiver on UCI digits (test split): one model, many budgets",
           header=header, timed_on=timed_on)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="the bundled digits model at every budget (offline)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="adaperceiver-demo.png",
                   help="where to write the plot (default: %(default)s)")
    p.set_defaults(func=run)
