"""Benchmark: ONNX Runtime (CPUExecutionProvider) vs the PyTorch model at the published size.

``python -m adaperceiver.bench_onnx [--quick] [--rounds R] [--threads T]``. Random weights
(``bench.randomize``) at the published size (embed 832, 13 heads, 21 blocks, 224x224,
patch 16). For each budget (N, m, depth) in ``BUDGETS``: export the static graph (export
time, file size), then images/s of ONNX Runtime and of the PyTorch model at batch 1 and
8, timed in interleaved rounds (``bench.interleaved``, best of R), and the ratio
onnxruntime / torch (> 1: ONNX Runtime is faster). Both use the same thread count.
Speed numbers come only from this run; a shared machine makes them noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .bench import PUBLISHED, interleaved, randomize
from .export_onnx import export_onnx
from .model import ClassificationAdaPerceiver
from .onnx_session import OnnxGraph

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
                "onnxruntime": lambda: graph.run(x),
                "torch": lambda: model(xt, num_tokens=N, mat_dim=m, depth=d),
            }, rounds)
        ort_ips, torch_ips = batch / best["onnxruntime"], batch / best["torch"]
        print(f"  batch {batch}: onnxruntime {ort_ips:8.2f} img/s  torch {torch_ips:8.2f} img/s"
              f"  ratio {ort_ips / torch_ips:5.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of both runtimes (default: torch's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = ClassificationAdaPerceiver(**PUBLISHED).eval()
    randomize(model)
    print(f"torch {torch.__version__}, {args.threads} threads, load average "
          f"{os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for budget in BUDGETS:
            bench_budget(model, budget, Path(tmp), (1, 8), 1 if args.quick else args.rounds,
                         args.threads)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
