"""Benchmark: ONNX Runtime (CPUExecutionProvider) vs the PyTorch model at the published size.

``python -m adaperceiver.bench.onnx [--quick] [--rounds R] [--threads T]``. Random weights
(``bench.published.randomize``) at the published size (embed 832, 13 heads, 21 blocks, 224x224,
patch 16). For each budget (N, m, depth) in ``BUDGETS``: export the static graph (export
time, file size), then images/s of ONNX Runtime and of the PyTorch model at batch 1 and
8, timed in interleaved rounds (``bench.timing.interleaved``; median [min..max] over the
rounds), and the speed ratio onnxruntime / torch as the median [min..max] of per-round
ratios (> 1: ONNX Runtime is faster). Both use the same thread count. Speed numbers
come only from this run; the load average printed before and after shows whether
other work competed.
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..cli.common import threads
from ..model import ClassificationAdaPerceiver
from ..onnx.export import export_onnx
from ..onnx.session import OnnxGraph
from .published import PUBLISHED, randomize
from .timing import interleaved, load, ratios, spread

BUDGETS = [(256, 832, 21), (128, 832, 21), (32, 416, 21)]  # (num_tokens, mat_dim, depth)


def bench_budget(model: ClassificationAdaPerceiver, budget: tuple[int, int, int], folder: Path,
                 batches: tuple[int, ...], rounds: int, threads: int) -> None:
    N, m, d = budget
    result = export_onnx(model, folder / f"adaperceiver-{N}-{m}-{d}.onnx", num_tokens=N,
                         mat_dim=m, depth=d)
    graph = OnnxGraph(result.path, threads=threads)
    print(f"({N}, {m}, {d}): export {result.seconds:.1f} s, {result.size_bytes / 2**20:.0f} MiB")
    for batch in batches:
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            best = interleaved({
                "onnxruntime": partial(graph.run, x),
                "torch": partial(model, xt, num_tokens=N, mat_dim=m, depth=d),
            }, rounds)
        ort, pt = best["onnxruntime"], best["torch"]
        print(f"  batch {batch}: onnxruntime {spread([batch / t for t in ort], 1, '.2f')} img/s, "
              f"torch {spread([batch / t for t in pt], 1, '.2f')} img/s, "
              f"onnxruntime / torch {spread(ratios(pt, ort), 1, '.2f')}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=threads, default=torch.get_num_threads(),
                        help="intra-op threads of both runtimes (default: torch's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = ClassificationAdaPerceiver(**PUBLISHED).eval()
    randomize(model)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load()}; "
          f"images/s as median [min..max] over the rounds")
    with tempfile.TemporaryDirectory() as tmp:
        for budget in BUDGETS:
            bench_budget(model, budget, Path(tmp), (1, 8), 1 if args.quick else args.rounds,
                         args.threads)
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
