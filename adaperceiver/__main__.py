"""Command line: run the PyTorch model at a chosen compute budget.

* ``python -m adaperceiver demo``: build a small model with random non-trivial weights,
  save it in the published layout (config.json + model.safetensors), load it back with
  ``from_pretrained`` and classify a fixed image batch at several budgets.
* ``python -m adaperceiver run --checkpoint PATH_OR_HUB_ID [--images FILE.npy]
  [--num-tokens N] [--mat-dim M] [--depth D | --depth-tau T] [--exit-policy P]``:
  classify preprocessed images (a float array (B, C, H, W) saved with ``numpy.save``;
  without ``--images`` a seeded random batch) with a checkpoint.

Each prints, per budget and sample: predicted class, its probability, blocks run, and
the analytic GFLOPs per image of the budget (``adaperceiver.flops``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .bench import randomize
from .config import ConfigError
from .flops import flops
from .hub import CheckpointError
from .model import ClassificationAdaPerceiver

# A small classifier: 16x16 images, 16 patches, 16 latents at most, 4 blocks.
DEMO_CONFIG = dict(embed_dim=32, num_heads=2, depth=4, max_latent_tokens=16, ffn_ratio=2.5,
                   mask_token_grans=[4, 8, 16], mat_dims=[8, 16, 32], img_size=16,
                   patch_size=4, num_classes=10, use_embed_ffn=True)
# Budgets the demo shows: full model, fewer tokens, narrower FFN, shallower, early exit.
DEMO_BUDGETS = [dict(), dict(num_tokens=8), dict(num_tokens=4, mat_dim=16), dict(depth=2),
                dict(depth_tau=0.8), dict(depth_tau=0.8, exit_policy="per_sample")]


def print_table(model: ClassificationAdaPerceiver, x: torch.Tensor,
                budgets: Sequence[dict[str, Any]]) -> None:
    """One row per (budget, sample): class, probability, exit depth, GFLOPs per image."""
    print(f"{'budget':<40} {'sample':>6} {'class':>6} {'prob':>7} {'depth':>6} {'GFLOPs':>8}")
    image_size = tuple(x.shape[-2:])
    for budget in budgets:
        label = ", ".join(f"{k}={v}" for k, v in budget.items()) or "full"
        with torch.inference_mode():
            out = model(x, **budget)
        probs = out.logits[:, 0].softmax(-1)  # (B, 1, C) -> (B, C)
        for b, (p, d) in enumerate(zip(probs, out.exit_depths.tolist(), strict=True)):
            fixed = {k: v for k, v in budget.items() if k in ("num_tokens", "mat_dim")}
            gflops = flops(model.config, depth=d, image_size=image_size, **fixed) / 1e9
            print(f"{label:<40} {b:>6} {int(p.argmax()):>6} {float(p.max()):>7.4f} {d:>6} "
                  f"{gflops:>8.4f}")


def demo() -> None:
    model = ClassificationAdaPerceiver(**DEMO_CONFIG)
    randomize(model, seed=0)
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        print(f"wrote and reloaded a checkpoint in the published layout ({directory})")
        model = ClassificationAdaPerceiver.from_pretrained(directory).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 3, 16, 16)))
    print_table(model, x.float(), DEMO_BUDGETS)


def run(args: argparse.Namespace) -> None:
    model = ClassificationAdaPerceiver.from_pretrained(args.checkpoint).eval()
    if args.images:
        x = torch.from_numpy(np.load(args.images, allow_pickle=False))
    else:
        c = model.config
        shape = (args.batch, c["in_channels"], c["img_size"], c["img_size"])
        x = torch.from_numpy(np.random.default_rng(args.seed).standard_normal(shape))
    budget = {"num_tokens": args.num_tokens, "mat_dim": args.mat_dim, "depth": args.depth,
              "depth_tau": args.depth_tau, "exit_policy": args.exit_policy}
    budget = {k: v for k, v in budget.items() if v is not None}
    print_table(model, x.float(), [budget])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaperceiver",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="small random model, several budgets")
    p = commands.add_parser("run", help="classify with a checkpoint at one budget")
    p.add_argument("--checkpoint", required=True, help="directory or hub id")
    p.add_argument("--images", help=".npy file holding a float array (B, C, H, W)")
    p.add_argument("--batch", type=int, default=2, help="random images when --images is absent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-tokens", type=int)
    p.add_argument("--mat-dim", type=int)
    exit_group = p.add_mutually_exclusive_group()
    exit_group.add_argument("--depth", type=int)
    exit_group.add_argument("--depth-tau", type=float)
    p.add_argument("--exit-policy", choices=["batch_mean", "per_sample"])
    args = parser.parse_args(argv)
    try:
        demo() if args.command == "demo" else run(args)
    except (CheckpointError, ConfigError, OSError, TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
