"""``adaperceiver train``: train the bundled cluttered-digits recipe (``adaperceiver.train``)
and write a checkpoint in the published layout, all or nothing; then print the per-budget
table, with 95 % intervals, on the fixed test canvases.

The flags' defaults are the recipe's (``TrainSettings``); torch is imported only when the
command runs, so ``--help`` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..files import atomic_directory, atomic_write, check_writable
from . import COMMANDS
from .checkpoint import METADATA_NAME
from .common import non_negative_float, non_negative_int, positive_float, positive_int, threads

# what --out holds after a run: an existing --out is replaced (with --force) only if it holds
# nothing else
OUT_FILES = frozenset({"config.json", "model.safetensors", METADATA_NAME, "README.md"})
TEST_SEED = 2014  # cluttered.TEST_SEED, repeated here so that --help needs no import
# TrainSettings' defaults, repeated for the same reason (tests/torch/test_train.py checks them)
MONITORED = 1000  # test canvases on which the full budget is followed during training
DEFAULTS = dict(steps=8000, batch_size=64, lr=2e-3, weight_decay=0.05, warmup=100,
                init_std=0.08, seed=0)


def check_out(out: Path, force: bool) -> None:
    """Before training: --out is new, empty, or (with --force) an earlier output of this
    command, and its parent directory is writable."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a new or empty directory")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not force:
        raise ValueError(f"--out {out} already exists and is not an empty directory; pass "
                         "--force to replace an earlier checkpoint written by this command")
    if set(held) - OUT_FILES:
        raise ValueError(f"--out {out} holds files this command does not write "
                         f"({', '.join(sorted(set(held) - OUT_FILES)[:5])}); it is not "
                         "replaced, even with --force")
    check_writable(out.absolute().parent, f"--out {out}")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate every budget on the test canvases, write OUT/{config.json,
    model.safetensors, adaperceiver.json, README.md} and print the table."""
    import torch

    from .. import cluttered
    from ..train import RECIPE, TrainSettings, metadata, model_card, train, training_log
    from .evaluation import table
    from .sweeping import evaluate_arrays

    out = Path(args.out)
    check_out(out, args.force)
    torch.set_num_threads(args.threads)
    settings = TrainSettings(**{key: getattr(args, key) for key in DEFAULTS})
    canvases, labels = cluttered.test_canvases()
    x_test = cluttered.to_input(canvases)
    started = time.perf_counter()
    result = train(RECIPE, settings, (x_test[:MONITORED], labels[:MONITORED]))
    seconds = time.perf_counter() - started
    evaluation = evaluate_arrays(result.model, x_test, labels)
    info = metadata(settings, args.command_line, seconds, args.threads, evaluation.rows,
                    cluttered.fingerprint(canvases, labels),
                    training_log(result, f"the first {MONITORED} test canvases"))
    with atomic_directory(out, replace=OUT_FILES) as new:
        result.model.save_pretrained(new)
        with atomic_write(new / METADATA_NAME) as f:
            f.write((json.dumps(info, indent=2) + "\n").encode("utf-8"))
        with atomic_write(new / "README.md") as f:  # replaces the hub mixin's generic card
            f.write(model_card(info).encode("utf-8"))
    print(table(evaluation.rows))
    print(f"trained in {seconds:.0f} s; wrote {out}/config.json, model.safetensors, "
          f"{METADATA_NAME}, README.md")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help=COMMANDS["train"][1],
        description="Train an AdaPerceiver on cluttered digits (a UCI digit among clutter on "
        "a 40 x 40 canvas, drawn afresh for every step) with the published joint objective "
        "(token loss over granularities + depth loss over blocks from one anytime pass, "
        "per-sample FFN widths; AdamW, warm-up, cosine decay) and write a checkpoint in the "
        "published layout. The defaults reproduce the bundled model.")
    p.add_argument("--out", required=True,
                   help="the checkpoint directory to write: new or empty (an earlier output "
                   "of this command with --force)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out written by this command (default: refuse)")
    p.add_argument("--steps", type=positive_int, default=DEFAULTS["steps"],
                   help="optimiser steps, one fresh batch of canvases each (default: "
                   "%(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"],
                   help="canvases per step (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"],
                   help="AdamW peak learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=non_negative_float, default=DEFAULTS["weight_decay"],
                   help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--warmup", type=non_negative_int, default=DEFAULTS["warmup"],
                   help="steps of linear learning-rate warm-up (default: %(default)s)")
    p.add_argument("--init-std", type=positive_float, default=DEFAULTS["init_std"],
                   help="std of the initial weights and tokens (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=DEFAULTS["seed"],
                   help="seed of the initial weights, the training canvases, widths and "
                   f"granularities; not {TEST_SEED}, the test set's (default: %(default)s)")
    p.add_argument("--threads", type=threads, default=1,
                   help="torch threads, at most the CPUs available; a run is repeatable for a "
                   "seed, thread count and CPU (default: %(default)s)")
    p.set_defaults(func=run)
