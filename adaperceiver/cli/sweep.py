"""``adaperceiver sweep``: accuracy against compute over a checkpoint's whole budget grid on
labelled data, with the Pareto front, a plot, JSON and CSV results, and an answer to a
compute budget."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import torch

from ..digits import load_digits
from ..flops import flops
from . import checkpoint
from .common import CliError, positive_float, positive_int
from .evaluation import EXIT_POLICIES, Evaluation, Row, choose, evaluate, table
from .inputs import load_folder
from .plot import plot

BUNDLED_DATA = "digits"


def load_data(data: str, loaded: checkpoint.Loaded) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels: the bundled digits' test split for 'digits', else an image folder."""
    if data != BUNDLED_DATA:
        x, y, _ = load_folder(Path(data), loaded)
        return x, y
    c = loaded.model.config
    if (c["in_channels"], c["img_size"], c["num_classes"]) != (1, 8, 10):
        raise CliError(f"--data digits: the bundled digits are 1 x 8 x 8 images of 10 classes, "
                       f"but --checkpoint {loaded.source} takes {c['in_channels']} x "
                       f"{c['img_size']} x {c['img_size']} images of {c['num_classes']} classes")
    x, y = load_digits("test")
    return torch.from_numpy(x), torch.from_numpy(y)


def report(loaded: checkpoint.Loaded, x: torch.Tensor, y: torch.Tensor, png: Path,
           title: str, batch_size: int) -> Evaluation:
    """Evaluate, print the table and write the plot."""
    evaluation = evaluate(loaded.model, x, y, batch_size=batch_size)
    print(table(evaluation.rows))
    print("* = on the accuracy/compute Pareto front; GFLOPs are analytic per image, ms/img "
          "measured on this machine (noisy)")
    plot(evaluation.rows, png, title)
    print(f"wrote the plot to {png}")
    return evaluation


def write_results(rows: list[Row], out: Path) -> None:
    (out / "results.json").write_text(json.dumps([r.as_dict() for r in rows], indent=1) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].as_dict()))
        writer.writeheader()
        writer.writerows(r.as_dict() for r in rows)


def print_choice(evaluation: Evaluation, budget: float) -> None:
    choice = choose(evaluation, budget)
    r = choice.fixed
    print(f"budget {budget:g} GFLOPs per image: most accurate fixed configuration "
          f"{r.name} ({100 * r.accuracy:.2f}%, {r.gflops:.6g} GFLOPs)")
    for policy in EXIT_POLICIES:
        found = choice.exits[policy]
        if found is None:
            print(f"  early exit {policy}: no depth_tau meets the budget on this data")
        else:
            tau, acc, cost = found
            print(f"  early exit {policy}: depth_tau {tau:g} meets it on this data "
                  f"({100 * acc:.2f}%, mean {cost:.6g} GFLOPs)")


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    loaded = checkpoint.load(args.checkpoint)
    c = loaded.model.config
    cheapest = flops(c, num_tokens=min(c["mask_token_grans"]), mat_dim=min(c["mat_dims"]),
                     depth=1) / 1e9
    if args.budget is not None and args.budget < cheapest:
        raise CliError(f"--budget {args.budget:g} GFLOPs is below the cheapest configuration "
                       f"({cheapest:.6g} GFLOPs per image)")
    x, y = load_data(args.data, loaded)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    title = f"{Path(loaded.source).name} on {Path(args.data).name} ({len(x)} images)"
    evaluation = report(loaded, x, y, out / "accuracy_vs_gflops.png", title, args.batch_size)
    write_results(evaluation.rows, out)
    print(f"wrote {out / 'results.json'} and {out / 'results.csv'}")
    if args.budget is not None:
        print_choice(evaluation, args.budget)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sweep", help="accuracy vs compute over the budget grid",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="checkpoint directory or hub id (default: the bundled "
                   "digits model)")
    p.add_argument("--data", default=BUNDLED_DATA, help="a folder with one sub-folder of images "
                   "per class, or 'digits' (the bundled test split; default)")
    p.add_argument("--out", default="adaperceiver-sweep", help="directory for the plot, "
                   "results.json and results.csv (default: %(default)s)")
    p.add_argument("--budget", type=positive_float, metavar="GFLOPS",
                   help="print the most accurate configuration within this many GFLOPs per "
                   "image, and the depth_tau that meets it on this data")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward; "
                   "batch_mean early exit decides per batch (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.set_defaults(func=run)
