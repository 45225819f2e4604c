"""``adaperceiver demo``: the bundled cluttered-digits model on its 3,590 fixed test
canvases at every compute budget (tokens x depth x width, and confidence early exit),
beside pixel baselines computed on the spot, offline.

What it prints: the model and how it was trained; softmax regression and k-nearest
neighbours on the raw pixels (NumPy, trained on ``BASELINE_TRAIN`` training canvases),
each with its 95 % interval; then the sweep's table (every budget with its interval,
sorted by compute, exit rows at full N and width), the Pareto front, ms/img measured on a
stated number of images (torch engine: ONNX Runtime computes a width's whole grid in one
graph run, so its configurations are not timed one by one), the finding in words, and a
plot whose accuracy axis starts at chance with the baselines drawn in.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import COMMANDS
from .common import CliError
from .engine import add_engine_arguments, grid_engine

BATCH = 64
BASELINE_TRAIN = 10_000  # training canvases the pixel baselines learn from
BASELINE_SEED = 1  # their seed (the bundled model's was 0; neither is the test set's)
TIMED_BATCHES = 8  # ms/img is measured on the first 8 x 64 = 512 test canvases


def run(args: argparse.Namespace) -> int:
    png = Path(args.out)
    if not png.parent.is_dir():
        raise CliError(f"--out {png}: the directory {png.parent} does not exist")
    engine = grid_engine(args, "demo")
    ran = f"engine {engine}, precision {args.precision}"
    from .. import cluttered
    from ..baselines import pixel_baselines
    from ..stats import wilson_interval
    from . import checkpoint
    from .dataset import ArrayImages, Data
    from .device import place
    from .distributed import World
    from .sweeping import evaluate_arrays, measure, report

    loaded = checkpoint.load(None)
    x, y = cluttered.test_set()
    training = loaded.metadata.get("training", {})
    header = [f"bundled model {loaded.source}: "
              f"{sum(p.numel() for p in loaded.model.parameters()):,} parameters, trained with "
              f"'{training.get('command', '?')}' ({training.get('steps', '?')} steps, seed "
              f"{training.get('seed', '?')}, {training.get('seconds', 0) / 60:.0f} min)",
              f"test set: {len(y):,} fixed canvases ({cluttered.CANVAS} x {cluttered.CANVAS}, "
              "one test-split digit among clutter each; no digit of the training split)"]
    x_base, y_base = cluttered.TrainStream(BASELINE_SEED, BASELINE_TRAIN).batch(0)
    baselines = pixel_baselines(x_base, y_base, x, y, classes=10)
    header.append(f"pixel baselines (NumPy, trained on {BASELINE_TRAIN:,} training canvases; "
                  "chance 10 %):")
    for b in baselines:
        low, high = wilson_interval(b.correct, b.total)
        header.append(f"  {b.name:<32} {100 * b.accuracy:6.2f} %  "
                      f"[{100 * low:.2f}, {100 * high:.2f}]")
    header.append(f"AdaPerceiver at every budget on the same {len(y):,} canvases ({ran}):")
    evaluation = evaluate_arrays(loaded.model, x, y, BATCH, precision=args.precision,
                                 engine=engine)
    timed_on = None  # ONNX Runtime computes a width's whole grid in one graph run
    if engine == "torch":
        timed = Data(ArrayImages(x, y), "cluttered")
        timed_on = measure(loaded.model, timed, evaluation,
                           place("cpu", args.precision, World()), BATCH, TIMED_BATCHES,
                           progress=False)
    report(evaluation, png, "AdaPerceiver on cluttered digits: one model, many budgets",
           header=header, timed_on=timed_on, ran=ran,
           baselines=[(b.name, b.accuracy) for b in baselines])
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help=COMMANDS["demo"][1],
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="adaperceiver-demo.png",
                   help="where to write the plot (default: %(default)s)")
    add_engine_arguments(p, grid=True)
    p.set_defaults(func=run)
