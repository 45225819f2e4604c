"""Anytime-grid benchmark at the published size: ``python -m adaperceiver.bench.anytime [--quick]``.

Model: embed 832, 13 heads, 21 blocks, ffn_ratio 2.57, 224x224 images, patch 16 (196
patches), granularities [32, 64, 96, 128, 192, 256], float32, ``torch.inference_mode``,
batch 8 (``--batch``). For each width 416 / 624 / 832 it prints, from rounds that
interleave the two calls:

* the time of one grid call (``model.anytime``: 21 depths x 6 granularities = 126
  logits per image) over the time of one full forward (256 latents, 21 blocks);
* the grid's achieved GFLOP/s (analytic ``anytime_flops``) and its ratio to this
  machine's float32 matmul peak, measured in the same run (best 2048x2048 ``torch.mm``).

Then the grid against its 126 configurations run one by one (``forward(num_tokens=g,
depth=d)``) at full width. ``--quick`` times a subset (depths 1, 11, 21 x every
granularity) and extrapolates the total by analytic FLOPs; it says so in the output.
Timings are the best of interleaved rounds; on a shared machine compare the ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from ..flops import anytime_flops, flops
from ..model import ClassificationAdaPerceiver
from .published import PUBLISHED as PUBLISHED_SIZE
from .published import WIDTHS

QUICK_DEPTHS = (1, 11, 21)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n x n ``torch.mm`` on this machine, now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    return max(2 * n**3 / _seconds(lambda: torch.mm(a, b)) for _ in range(repeats)) / 1e9


def grid_vs_forward(model: ClassificationAdaPerceiver, x: torch.Tensor, width: int,
                    rounds: int) -> tuple[float, float]:
    """Best seconds of (one grid call, one full forward), interleaved over ``rounds``."""
    grid_s, forward_s = [], []
    for _ in range(rounds):
        grid_s.append(_seconds(lambda: model.anytime(x, mat_dim=width)))
        forward_s.append(_seconds(lambda: model(x, mat_dim=width)))
    return min(grid_s), min(forward_s)


def one_by_one(model: ClassificationAdaPerceiver, x: torch.Tensor, width: int,
               depths: tuple[int, ...]) -> tuple[float, float]:
    """Seconds to run each configuration (g, d) for g in the granularities and d in
    ``depths`` once, and the analytic FLOPs per image of those runs."""
    grans = PUBLISHED_SIZE["mask_token_grans"]
    seconds = sum(_seconds(lambda g=g, d=d: model(x, num_tokens=g, depth=d, mat_dim=width))
                  for d in depths for g in grans)
    cost = sum(flops(PUBLISHED_SIZE, num_tokens=g, depth=d, mat_dim=width)
               for d in depths for g in grans)
    return seconds, cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaperceiver.bench.anytime",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds; 18 of the 126 single runs, total extrapolated by FLOPs")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per width (default 2 quick, 4 full)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 4)
    torch.manual_seed(0)
    model = ClassificationAdaPerceiver(**PUBLISHED_SIZE).eval()
    x = torch.randn(args.batch, 3, 224, 224)
    B = args.batch
    print(f"anytime grid benchmark: published size, batch {B}, float32, "
          f"{torch.get_num_threads()} threads, best of {rounds} interleaved rounds")
    print("(the machine may be shared: absolute times are noisy, compare the ratios)")
    with torch.inference_mode():
        model.anytime(x[:1], mat_dim=416)  # warm-up
        model(x[:1])
        peak = matmul_peak()
        print(f"float32 matmul peak (2048^3 torch.mm, this run): {peak:.1f} GFLOP/s\n")
        print(f"{'width':>5} {'grid s':>8} {'forward s':>9} {'grid/fwd':>8} "
              f"{'grid GFLOP/img':>14} {'fwd GFLOP/img':>13} {'grid GFLOP/s':>12} "
              f"{'of peak':>7}")
        for width in WIDTHS:
            grid_s, forward_s = grid_vs_forward(model, x, width, rounds)
            grid_flops = anytime_flops(PUBLISHED_SIZE, mat_dim=width).grid
            forward_flops = flops(PUBLISHED_SIZE, mat_dim=width)
            achieved = B * grid_flops / grid_s / 1e9
            print(f"{width:>5} {grid_s:>8.3f} {forward_s:>9.3f} {grid_s / forward_s:>8.3f} "
                  f"{grid_flops / 1e9:>14.2f} {forward_flops / 1e9:>13.2f} {achieved:>12.1f} "
                  f"{achieved / peak:>7.1%}")

        width = WIDTHS[-1]
        depths = QUICK_DEPTHS if args.quick else tuple(range(1, PUBLISHED_SIZE["depth"] + 1))
        grid_s, _ = grid_vs_forward(model, x, width, 1)
        seconds, cost = one_by_one(model, x, width, depths)
        cost_model = anytime_flops(PUBLISHED_SIZE, mat_dim=width)
        total_cost = cost_model.entries.sum()
        runs = len(depths) * len(PUBLISHED_SIZE["mask_token_grans"])
        if args.quick:
            estimate = seconds * total_cost / cost
            print(f"\n126 single runs at width {width}: timed {runs} of them (depths "
                  f"{', '.join(map(str, depths))} x 6 granularities) in {seconds:.2f} s; "
                  f"extrapolated by analytic FLOPs ({total_cost / cost:.2f}x): "
                  f"{estimate:.1f} s")
        else:
            estimate = seconds
            print(f"\n126 single runs at width {width}, each once: {seconds:.2f} s")
        print(f"grid call: {grid_s:.3f} s -> 126 runs / grid = {estimate / grid_s:.1f}x "
              f"(analytic FLOPs ratio {total_cost / cost_model.grid:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
