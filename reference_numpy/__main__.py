"""Command line: ``python -m reference_numpy demo|classify``.

* ``demo [--out DIR]``: write a tiny random checkpoint (seed 0), load it back
  and classify a fixed image batch at a few budgets.
* ``classify --checkpoint PATH_OR_ID [--image-seed S] [--batch B] [--num-tokens N]
  [--mat-dim M] [--depth D | --depth-tau T] [--exit-policy P]``: classify a
  deterministic random image batch with a checkpoint.

Both print one row per (budget, sample): predicted class, its probability and
the number of blocks run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import CheckpointError, load_checkpoint, random_weights, save_checkpoint
from .config import tiny_config
from .model import trace
from .ops import softmax

# (num_tokens, mat_dim, depth, depth_tau) budgets shown by the demo.
DEMO_BUDGETS = (
    {},
    {"num_tokens": 4},
    {"num_tokens": 8, "mat_dim": 8},
    {"depth": 1},
    {"depth_tau": 0.3},
    {"depth_tau": 0.3, "exit_policy": "per_sample"},
)


def sample_images(config: Mapping[str, Any], *, seed: int, batch: int) -> np.ndarray:
    """Deterministic standard-normal images (batch, in_channels, img_size, img_size)."""
    size = config["img_size"]
    return np.random.default_rng(seed).standard_normal((batch, config["in_channels"], size, size))


def print_table(config: Mapping[str, Any], weights: Mapping[str, np.ndarray], images: np.ndarray,
                budgets: Sequence[Mapping[str, Any]]) -> None:
    labels = [", ".join(f"{k}={v}" for k, v in budget.items()) or "full" for budget in budgets]
    width = max(map(len, ["budget", *labels]))
    print(f"{'budget':<{width}} {'sample':>6} {'class':>6} {'prob':>7} {'depth':>6}")
    for label, budget in zip(labels, budgets, strict=True):
        result = trace(weights, config, images, **budget)
        probs = softmax(result.logits[:, 0, :])  # (B, 1, C) -> (B, C)
        for b, (p, exit_depth) in enumerate(zip(probs, result.exit_depths, strict=True)):
            print(f"{label:<{width}} {b:>6} {int(p.argmax()):>6} {p.max():>7.4f} "
                  f"{int(exit_depth):>6}")


def demo(out: Path | None) -> None:
    config = tiny_config()
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    directory = out or Path(tempfile.mkdtemp(prefix="adaperceiver-demo-"))
    save_checkpoint(directory, config, random_weights(config, seed=0))
    config, weights = load_checkpoint(directory)
    print(f"tiny checkpoint written to and loaded from {directory}")
    print_table(config, weights, sample_images(config, seed=0, batch=2), DEMO_BUDGETS)


def classify_command(args: argparse.Namespace) -> None:
    config, weights = load_checkpoint(args.checkpoint)
    budget = {name: value for name, value in (
        ("num_tokens", args.num_tokens), ("mat_dim", args.mat_dim), ("depth", args.depth),
        ("depth_tau", args.depth_tau)) if value is not None}
    if args.exit_policy is not None:
        budget["exit_policy"] = args.exit_policy
    images = sample_images(config, seed=args.image_seed, batch=args.batch)
    print_table(config, weights, images, [budget])


MAX_BATCH = 4096  # --batch: larger batches of random images are refused before allocating


def _ranged_int(flag: str, low: int, high: int | None = None):
    """An argparse type: an int in low..high whose error names ``flag``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an int, got {text!r}") from None
        if value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"{flag} must be an int {allowed}, got {value}")
        return value
    return parse


def _real(flag: str):
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a real number, got {text!r}") from None
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_numpy",
                                     description="AdaPerceiver NumPy oracle")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="tiny random checkpoint round trip")
    demo_parser.add_argument("--out", type=Path, help="directory for the checkpoint")
    run = commands.add_parser("classify", help="classify random images with a checkpoint")
    run.add_argument("--checkpoint", required=True, help="checkpoint directory or hub repo id")
    run.add_argument("--image-seed", type=_ranged_int("--image-seed", 0), default=0)
    run.add_argument("--batch", type=_ranged_int("--batch", 1, MAX_BATCH), default=2)
    # model-dependent ranges are checked by the model itself (ARG-1..4)
    run.add_argument("--num-tokens", type=_ranged_int("--num-tokens", -2**63))
    run.add_argument("--mat-dim", type=_ranged_int("--mat-dim", -2**63))
    run.add_argument("--depth", type=_ranged_int("--depth", -2**63))
    run.add_argument("--depth-tau", type=_real("--depth-tau"))
    run.add_argument("--exit-policy", choices=("batch_mean", "per_sample"))
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo(args.out)
        else:
            classify_command(args)
    except (CheckpointError, TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory; use a smaller --batch or --num-tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
