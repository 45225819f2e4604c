"""``adaperceiver classify``: top-5 classes of image files (JPEG, PNG, ... via Pillow, with
the checkpoint's preprocessing) or preprocessed ``.npy`` arrays, at a chosen budget.

The inputs run in batches of ``--batch-size`` images (fewer when a batch's estimated
memory, ``limits.estimate_bytes``, would exceed half of the memory available now), so
memory does not grow with the number of images; a call whose analytic cost per image
(``flops``) is more than ``FAR_ABOVE`` times the checkpoint's trained budget first prints
its estimate (GFLOPs and the time at a rate measured here on a warm-up call).

``--engine`` and ``--precision`` choose what runs the budget (``cli.engine.make_runner``:
torch eager, torch.compile, or the budget exported to ONNX Runtime; fp32, bf16 or int8);
the table's header names the engine and precision that ran and what setting them up cost.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from ..config import EXIT_POLICIES, MAX_TOKENS
from . import COMMANDS
from .common import (
    CliError,
    available_memory,
    check_budget,
    fraction,
    integer,
    num_tokens,
    positive_int,
    threads,
)
from .engine import add_engine_arguments, make_runner

TOP = 5
BATCH_SIZE = 256  # default images per forward pass
MEMORY_SHARE = 0.5  # a batch may use at most this share of the memory available now
FAR_ABOVE = 10  # cost per image above this multiple of the trained budget is announced
WARMUP_GFLOPS = 2.0  # the rate is measured on one image of about this cost


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..arguments import parse_call
    from ..flops import flops
    from ..preprocess import describe
    from . import checkpoint
    from .inputs import Inputs

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.exit_policy is not None and args.depth_tau is None:
        raise CliError("--exit-policy needs --depth-tau (without early exit it has no effect)")
    loaded = checkpoint.load(args.checkpoint)
    config = loaded.model.config
    check_budget(args.depth, args.mat_dim, config)
    inputs = Inputs(args.images, loaded)
    budget = {"num_tokens": args.num_tokens, "mat_dim": args.mat_dim, "depth": args.depth,
              "depth_tau": args.depth_tau, "exit_policy": args.exit_policy}
    budget = {k: v for k, v in budget.items() if v is not None}
    parse_call(config, torch.zeros((1, *inputs.shape)), **budget)  # ARG-1..8 before any work
    fixed = {k: budget[k] for k in ("num_tokens", "mat_dim") if k in budget}
    size = tuple(inputs.shape[1:])
    batch = _batch_size(min(args.batch_size, len(inputs)), config, inputs.shape,
                        budget.get("num_tokens", config["max_latent_tokens"]))
    per_image = flops(config, depth=args.depth, image_size=size, **fixed) / 1e9
    trained = flops(config) / 1e9
    if per_image > FAR_ABOVE * trained:
        rate = _measured_rate(loaded.model, inputs.shape, fixed, per_image)
        total = per_image * len(inputs)
        print(f"classify: {len(inputs)} image(s) at an estimated {per_image:.4g} GFLOPs each, "
              f"{per_image / trained:,.0f}x the checkpoint's trained budget ({trained:.3g} "
              f"GFLOPs); {total:.4g} GFLOPs in all: roughly {_duration(total / rate)} at the "
              f"{rate:.3g} GFLOP/s measured here on a smaller warm-up call (large calls often "
              "run faster)", file=sys.stderr)
    run_budget = make_runner(args, loaded.model, **budget)
    width = max(len("image"), *(len(n) for n in inputs.names))
    top_k = min(TOP, config["num_classes"])
    if inputs.has_files:
        print(f"image files: {describe(loaded.preprocessing, config['img_size'])}")
    print(f"{'image':<{width}}  {'depth':>5}  {'GFLOPs':>9}  top-{top_k} (probability)   "
          f"[engine {run_budget.engine}, precision {run_budget.precision}, setup "
          f"{run_budget.setup_seconds:.2f} s]")
    costs: dict[int, float] = {}  # GFLOPs by exit depth
    starts = range(0, len(inputs), batch)
    for start in tqdm(starts, desc="classify", unit="batch", file=sys.stderr,
                      disable=None if len(starts) > 1 else True):
        x = inputs.batch(start, start + batch)
        out = run_budget(x)
        probs = out.logits[:, 0].double().softmax(-1)  # (B, 1, C) -> (B, C)
        top = probs.topk(top_k, dim=-1)
        for name, p, i, d in zip(inputs.names[start:start + batch], top.values, top.indices,
                                 out.exit_depths.tolist(), strict=True):
            if d not in costs:
                costs[d] = flops(config, depth=d, image_size=size, **fixed) / 1e9
            classes = ", ".join(f"{loaded.labels[int(k)]} ({float(q):.3f})"
                                for q, k in zip(p, i, strict=True))
            tqdm.write(f"{name:<{width}}  {d:>5}  {costs[d]:>9.5f}  {classes}", file=sys.stdout)
    return 0


def _batch_size(requested: int, config: dict[str, Any], shape: tuple[int, ...],
                tokens: int) -> int:
    """``requested``, or fewer images when a batch's estimated memory (LIM-3's formula plus
    the float32 batch itself) would exceed ``MEMORY_SHARE`` of the memory available now."""
    from ..limits import GIB, estimate_bytes

    per_image = estimate_bytes(config, (1, *shape), tokens, 4) + 4 * math.prod(shape)
    available = available_memory()
    if available is None:
        return requested
    fit = int(MEMORY_SHARE * available // per_image)
    if fit < 1:
        raise CliError(f"one image of shape {shape} at num_tokens={tokens} needs an estimated "
                       f"{per_image / GIB:.3g} GiB, more than half of the {available / GIB:.3g} "
                       "GiB of memory available now; use fewer tokens (--num-tokens)")
    if fit < requested:
        print(f"classify: batches of {fit} images ({requested} would need more than half of "
              f"the {available / GIB:.3g} GiB of memory available now)",
              file=sys.stderr)
    return min(requested, fit)


def _measured_rate(model: Any, shape: tuple[int, ...], fixed: dict[str, Any],
                   per_image: float) -> float:
    """GFLOP/s of one image at a token count whose cost is about ``WARMUP_GFLOPS`` (doubling
    N from max_latent_tokens, never beyond the call's own cost), timed on a second run."""
    import torch

    from ..flops import flops

    c = model.config
    call = dict(fixed)
    call["num_tokens"] = c["max_latent_tokens"]
    size = tuple(shape[1:])
    cost = flops(c, image_size=size, **call) / 1e9
    while cost < min(WARMUP_GFLOPS, per_image) and 2 * call["num_tokens"] <= MAX_TOKENS:
        call["num_tokens"] *= 2
        cost = flops(c, image_size=size, **call) / 1e9
    x = torch.zeros((1, *shape))
    with torch.inference_mode():
        model(x, **call)
        start = time.perf_counter()
        model(x, **call)
    return cost / max(time.perf_counter() - start, 1e-9)


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.2 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("classify", help=COMMANDS["classify"][1],
                              description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (preprocessed as the checkpoint says) or .npy float "
                   "arrays (B, C, H, W) already preprocessed")
    p.add_argument("--checkpoint", help="checkpoint directory or hub id (default: the bundled "
                   "cluttered-digits model)")
    p.add_argument("--num-tokens", type=num_tokens,
                   help="latent tokens N, 1..65536 (default: the checkpoint's maximum)")
    p.add_argument("--mat-dim", type=integer,
                   help="Matryoshka FFN width, 1..embed_dim (default: full width)")
    exit_group = p.add_mutually_exclusive_group()
    exit_group.add_argument("--depth", type=integer,
                            help="blocks to run, 1..the checkpoint's depth (default: all)")
    exit_group.add_argument("--depth-tau", type=fraction,
                            help="confidence early exit threshold in [0, 1]")
    p.add_argument("--exit-policy", choices=EXIT_POLICIES,
                   help="with --depth-tau: batch_mean (default, upstream; decided per batch) "
                   "or per_sample")
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE,
                   help="images per forward pass (default: %(default)s; fewer when memory "
                   "is short)")
    p.add_argument("--threads", type=threads,
                   help="torch threads, at most the CPUs available (default: torch's)")
    add_engine_arguments(p)
    p.set_defaults(func=run)
