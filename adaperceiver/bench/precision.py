"""The bundled task at every precision: ``python -m adaperceiver.bench.precision``.

``[--images N] [--batch-size B] [--threads T]``. The bundled cluttered-digits model
(``adaperceiver/data/cluttered-model``) on its 3,590 fixed test canvases
(``adaperceiver.cluttered.test_set``, the demo's data), the whole budget grid of ``sweep``
(every N x depth x width from one anytime pass per width, and the confidence exit rows)
evaluated by ``sweeping.evaluate_arrays`` on each path:

* ``fp32``: the torch model, float32 (the reference);
* ``bf16``: the torch model under ``torch.autocast("cpu", bfloat16)``;
* ``ort fp32``: one exported anytime graph per width in ONNX Runtime (a check of the export);
* ``int8``: those graphs with their weight matmuls dynamically quantized
  (``OnnxAnytime.quantized``).

It prints one markdown table row per budget (sorted by GFLOPs as in ``sweep``): the top-1
accuracy of each path, and for each fixed budget the top-1 agreement of each path with
fp32 over the images (the share of images whose predicted class equals fp32's); then per
path the max |accuracy - fp32 accuracy| over all budgets (fixed and exit rows), the
agreement at the full budget and its minimum over the fixed budgets, against the targets
``MAX_LOSS_POINTS`` and ``MIN_AGREEMENT``, with the setup (export, quantization) and
evaluation seconds, the thread count and the load average.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import cluttered
from ..cli import checkpoint
from ..cli.evaluation import AnytimeModel, Evaluation, make_grid
from ..cli.sweeping import evaluate_arrays, grid_model
from .timing import load

PATHS = ("fp32", "bf16", "ort fp32", "int8")  # fp32 first: the reference
MAX_LOSS_POINTS = 0.5  # the targets for bf16 and int8
MIN_AGREEMENT = 0.99
BATCH = 64


class Predictions:
    """An ``AnytimeModel`` that passes every call through to ``computes`` and keeps the
    top-1 class of every grid entry: ``top1[m]`` (n, K, G) int64 for width m, images in
    call order."""

    def __init__(self, computes: AnytimeModel):
        self.computes = computes
        self.batches: dict[int, list[Tensor]] = defaultdict(list)

    def anytime(self, x: Tensor, num_tokens: int | None = None,
                mat_dim: int | None = None) -> Any:
        out = self.computes.anytime(x, num_tokens=num_tokens, mat_dim=mat_dim)
        self.batches[mat_dim].append(out.logits.argmax(-1).cpu())  # (b, K, G, C) -> (b, K, G)
        return out

    @property
    def top1(self) -> dict[int, np.ndarray]:
        return {m: torch.cat(b).numpy() for m, b in self.batches.items()}


def evaluate_paths(x: np.ndarray, y: np.ndarray, batch_size: int = BATCH,
                   progress: bool = True) -> dict[str, tuple[Evaluation, dict, float, float]]:
    """Per path of ``PATHS``: (evaluation, top-1 per width, setup s, evaluation s)."""
    model = checkpoint.load(None).model
    size = model.config["img_size"]
    ort, _ = grid_model(model, make_grid(model.config, size), size, "onnxruntime", "fp32")
    int8 = ort.quantized()
    computes = {"fp32": (model, "fp32", 0.0), "bf16": (model, "bf16", 0.0),
                "ort fp32": (ort, "fp32", ort.setup_seconds),
                "int8": (int8, "int8", int8.setup_seconds)}
    results = {}
    for path in PATHS:
        inner, precision, setup = computes[path]
        recorder = Predictions(inner)
        start = time.perf_counter()
        evaluation = evaluate_arrays(model, x, y, batch_size, progress=progress,
                                     precision=precision, computes=recorder)
        results[path] = (evaluation, recorder.top1, setup, time.perf_counter() - start)
    return results


def precision_table(results: dict[str, tuple[Evaluation, dict, float, float]]) -> list[str]:
    """The markdown table (one row per budget) and the summary lines (module doc)."""
    reference, ref_top1 = results["fp32"][0], results["fp32"][1]
    others = [p for p in results if p != "fp32"]
    by_name = {p: {r.name: r for r in results[p][0].rows} for p in results}
    lines = ["| configuration | GFLOPs | " + " | ".join(f"{p} acc %" for p in results) + " | "
             + " | ".join(f"{p} top-1 agree %" for p in others) + " |",
             "|---" * (2 + len(results) + len(others)) + "|"]
    agreement: dict[str, dict[str, float]] = {p: {} for p in others}
    for row in reference.rows:
        accs = [f"{100 * by_name[p][row.name].accuracy:.2f}" for p in results]
        agrees = []
        for p in others:
            if row.tau is None:
                li = results[p][0].grid.depths.index(int(row.depth))
                gi = results[p][0].grid.granularities.index(row.num_tokens)
                m = row.width
                same = float((results[p][1][m][:, li, gi] == ref_top1[m][:, li, gi]).mean())
                agreement[p][row.name] = same
                agrees.append(f"{100 * same:.2f}")
            else:
                agrees.append("-")
        lines.append(f"| {row.name} | {row.gflops:.4g} | " + " | ".join(accs) + " | "
                     + " | ".join(agrees) + " |")
    full = max((r for r in reference.rows if r.tau is None), key=lambda r: r.gflops)
    lines.append("")
    for p in others:
        deltas = [abs(by_name[p][r.name].accuracy - r.accuracy) for r in reference.rows]
        worst = max(deltas)
        low_name = min(agreement[p], key=agreement[p].get)
        at_full, lowest = agreement[p][full.name], agreement[p][low_name]
        met = 100 * worst <= MAX_LOSS_POINTS and lowest >= MIN_AGREEMENT
        lines.append(f"{p}: max |accuracy delta| vs fp32 {100 * worst:.2f} points over "
                     f"{len(deltas)} budgets; top-1 agreement with fp32 {100 * at_full:.2f} % "
                     f"at the full budget ({full.name}), lowest {100 * lowest:.2f} % "
                     f"({low_name}); targets (<= {MAX_LOSS_POINTS} points, >= "
                     f"{100 * MIN_AGREEMENT:g} % at every budget) {'met' if met else 'NOT met'}")
    for p, (_, _, setup, seconds) in results.items():
        lines.append(f"{p}: setup {setup:.1f} s, evaluation {seconds:.1f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaperceiver.bench.precision",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, help="the first N test canvases (default: all)")
    parser.add_argument("--batch-size", type=int, default=BATCH, help="images per forward "
                        "(batch_mean exit decides per batch; default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    x, y = cluttered.test_set()
    if args.images is not None:
        x, y = x[: args.images], y[: args.images]
    print(f"bundled cluttered-digits model on {len(y):,} test canvases, batch "
          f"{args.batch_size}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"load average {load()}")
    results = evaluate_paths(x, y, args.batch_size)
    for line in precision_table(results):
        print(line)
    print(f"load average {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
