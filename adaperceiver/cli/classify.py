"""``adaperceiver classify``: top-5 classes of image files (JPEG, PNG, ... via Pillow, with
the checkpoint's preprocessing) or preprocessed ``.npy`` arrays, at a chosen budget."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..arguments import EXIT_POLICIES
from ..flops import flops
from . import checkpoint
from .common import CliError, fraction, positive_int
from .inputs import load_inputs

TOP = 5
MAX_TOKENS = 65536  # the command's bound on --num-tokens (attention is N x N per block)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.exit_policy is not None and args.depth_tau is None:
        raise CliError("--exit-policy needs --depth-tau (without early exit it has no effect)")
    if args.num_tokens is not None and args.num_tokens > MAX_TOKENS:
        raise CliError(f"--num-tokens must be at most {MAX_TOKENS}, got {args.num_tokens}")
    loaded = checkpoint.load(args.checkpoint)
    names, x = load_inputs(args.images, loaded)
    budget = {"num_tokens": args.num_tokens, "mat_dim": args.mat_dim, "depth": args.depth,
              "depth_tau": args.depth_tau, "exit_policy": args.exit_policy}
    budget = {k: v for k, v in budget.items() if v is not None}
    with torch.inference_mode():
        out = loaded.model(x, **budget)
    probs = out.logits[:, 0].double().softmax(-1)  # (B, 1, C) -> (B, C)
    top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
    fixed = {k: budget[k] for k in ("num_tokens", "mat_dim") if k in budget}
    width = max(len("image"), *(len(n) for n in names))
    print(f"{'image':<{width}}  {'depth':>5}  {'GFLOPs':>9}  top-{top.indices.shape[-1]} "
          "(probability)")
    for name, p, i, d in zip(names, top.values, top.indices, out.exit_depths.tolist(),
                             strict=True):
        cost = flops(loaded.model.config, depth=d, image_size=tuple(x.shape[-2:]), **fixed) / 1e9
        classes = ", ".join(f"{loaded.labels[int(k)]} ({float(q):.3f})" for q, k in zip(p, i,
                                                                                         strict=True))
        print(f"{name:<{width}}  {d:>5}  {cost:>9.5f}  {classes}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("classify", help="top-5 classes of images at a chosen budget",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (preprocessed as the checkpoint says) or .npy float "
                   "arrays (B, C, H, W) already preprocessed")
    p.add_argument("--checkpoint", help="checkpoint directory or hub id (default: the bundled "
                   "digits model)")
    p.add_argument("--num-tokens", type=positive_int, help="latent tokens N")
    p.add_argument("--mat-dim", type=positive_int, help="Matryoshka FFN width")
    exit_group = p.add_mutually_exclusive_group()
    exit_group.add_argument("--depth", type=positive_int, help="blocks to run")
    exit_group.add_argument("--depth-tau", type=fraction,
                            help="confidence early exit threshold in [0, 1]")
    p.add_argument("--exit-policy", choices=EXIT_POLICIES,
                   help="with --depth-tau: batch_mean (default, upstream) or per_sample")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.set_defaults(func=run)
