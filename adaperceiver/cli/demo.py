"""``adaperceiver demo``: the bundled digits model on its held-out test split, over every
compute budget (tokens x depth x width, and confidence early exit), offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import COMMANDS
from .common import CliError


def run(args: argparse.Namespace) -> int:
    import torch

    from . import checkpoint
    from .sweep import BUNDLED_DATA, load_data, report

    torch.set_num_threads(1)  # an 8 x 8 model: more threads only add overhead
    png = Path(args.out)
    if not png.parent.is_dir():
        raise CliError(f"--out {png}: the directory {png.parent} does not exist")
    loaded = checkpoint.load(None)
    x, y = load_data(BUNDLED_DATA, loaded)
    accuracy = loaded.metadata.get("test_accuracy", {}).get("min_over_grid")
    print(f"bundled model {loaded.source}: {sum(p.numel() for p in loaded.model.parameters()):,} "
          f"parameters, trained on the UCI digits train split"
          + (f" (lowest test accuracy over the grid at training: {100 * accuracy:.2f}%)"
             if accuracy is not None else ""))
    print(f"evaluating {len(x)} held-out test digits at every budget")
    report(loaded, x, y, png, "AdaPerceiver on UCI digits (test split): one model, "
           "many budgets", batch_size=64)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help=COMMANDS["demo"][1],
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="adaperceiver-demo.png",
                   help="where to write the plot (default: %(default)s)")
    p.set_defaults(func=run)
