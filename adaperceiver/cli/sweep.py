"""``adaperceiver sweep``: accuracy against compute over a checkpoint's whole budget grid on
labelled data, streamed through a DataLoader, on CPU or CUDA, over several processes and
machines with torchrun, resumable; the table with 95 % intervals, the Pareto front, a plot,
JSON and CSV results, and an answer to a compute budget.

Under ``torchrun --nproc-per-node K -m adaperceiver sweep ...`` every rank evaluates its own
whole batches of the data (``distributed.batch_range``), the counts are summed with
``torch.distributed`` and rank 0 alone prints and writes the results.

``--engine onnxruntime --precision fp32|int8`` computes the grid with one exported anytime
graph per width in ONNX Runtime on the CPU (``adaperceiver.engine.anytime_model``); the
accuracy, exit rows and results are derived from its logits exactly as from the torch
model's. The command module imports no torch until it runs (``sweeping`` does the work).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from . import COMMANDS
from .common import (
    BUNDLED_SETS,
    DEVICES,
    LABEL_MODES,
    CliError,
    non_negative_int,
    positive_float,
    positive_int,
)
from .engine import add_engine_arguments, grid_engine

RESULTS = ("results.json", "results.csv")


def _prepare_out(out: Path, args: argparse.Namespace) -> None:
    """Refuse to overwrite results or a saved state unless --force (or --resume)."""
    from . import partial

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    if args.force and args.resume:
        raise CliError("--force and --resume: choose one (--force starts over, --resume "
                       "continues)")
    existing = [name for name in (*RESULTS, partial.FOLDER) if (out / name).exists()]
    if existing and not (args.force or args.resume):
        raise CliError(f"--out {out}: already holds {', '.join(existing)}; pass --resume to "
                       "continue an interrupted run or --force to start over")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..hub import resolve_files
    from . import checkpoint, distributed, partial
    from .dataset import load_data
    from .device import place
    from .evaluation import EXIT_POLICIES, EXIT_TAUS, TAU_CANDIDATES, finding, make_grid
    from .streaming import Settings, fixed_mmap_threshold
    from .sweeping import (
        PRECISION_NAMES,
        autocast_of,
        evaluate,
        grid_model,
        measure,
        print_choice,
        report,
        sha256_file,
        software,
        write_results,
    )

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    engine = grid_engine(args, "sweep")
    if engine == "onnxruntime":
        onnx_refusals(args)
    world = distributed.from_env()
    placement = place("cpu" if engine == "onnxruntime" else args.device,
                      autocast_of(args.precision), world)
    ran = f"engine {engine}, precision {args.precision}"
    loaded = checkpoint.load(args.checkpoint)
    loaded.model.to(placement.device)
    data = load_data(args.data, loaded, args.labels)
    c = loaded.model.config
    image_size = data.dataset[0][0].shape[-1]
    grid = make_grid(c, image_size, num_tokens=args.num_tokens, widths=args.widths,
                     taus=TAU_CANDIDATES if args.budget is not None else EXIT_TAUS)
    cheapest = float(grid.gflops.min())
    if args.budget is not None and args.budget < cheapest:
        raise CliError(f"--budget {args.budget:g} GFLOPs is below the cheapest configuration "
                       f"({cheapest:.6g} GFLOPs per image)")
    if args.plot_floor is not None and not 0 <= args.plot_floor < 100:
        raise CliError(f"--plot-floor must be a percentage in [0, 100), got {args.plot_floor:g}")
    out = Path(args.out)
    _prepare_out(out, args)
    if world.is_main and args.force:
        partial.clear(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_files = resolve_files(loaded.source)
    fingerprint = {
        "checkpoint_sha256": sha256_file(ckpt_files[1]), "config_sha256":
        sha256_file(ckpt_files[0]), "data": data.describe, "batch_size": args.batch_size,
        "world_size": world.world_size, "num_tokens": grid.num_tokens,
        "widths": list(grid.widths), "taus": list(grid.taus),
        "engine": engine, "precision": args.precision, "device_type": placement.device.type,
        "save_logits": args.save_logits}
    settings = Settings(batch_size=args.batch_size, workers=args.workers,
                        checkpoint_every=args.checkpoint_every, progress=world.is_main,
                        stop_after=args.stop_after)
    if world.is_main:
        print(f"{Path(loaded.source).name}: {len(data):,} images of {args.data}, "
              f"{len(grid.widths) * len(grid.depths) * len(grid.granularities)} configurations "
              f"+ early exit, on {placement.device} ({ran}), "
              f"{world.world_size} process(es), batch {args.batch_size}, "
              f"{args.workers} loader worker(s) per process")
        warning = grid.untrained()
        if warning:
            print(warning, file=sys.stderr)
    model, exported = grid_model(loaded.model, grid, image_size, engine, args.precision)
    if world.is_main and exported:
        print(exported)
    fixed_mmap_threshold()  # resident memory independent of the number of images
    sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)  # saves the state
    distributed.start(world, placement.device.type)
    try:
        evaluation, per_rank = evaluate(
            model, data, grid, placement, world, settings, out=out, resume=args.resume,
            fingerprint=fingerprint, logits=out / "logits.npy" if args.save_logits else None)
        distributed.barrier(world)
        if world.is_main:
            meta = {"num_images": len(data), "world_size": world.world_size,
                    "images_per_rank": per_rank, "engine": engine, **placement.describe(),
                    "batch_size": args.batch_size, "workers": args.workers,
                    "checkpoint": {"source": str(loaded.source), **{
                        k: fingerprint[k] for k in ("checkpoint_sha256", "config_sha256")}},
                    "data": data.describe, "grid": {
                        "num_tokens": grid.num_tokens, "granularities": list(grid.granularities),
                        "depths": list(grid.depths), "widths": list(grid.widths),
                        "exit_taus": list(grid.shown), "exit_policies": list(EXIT_POLICIES)},
                    "software": software(), "command": getattr(args, "command_line", None),
                    "finding": finding(evaluation.rows), "timing": None,
                    "logits": "logits.npy: (images, depths, classes) float32, full width, all N"
                    if args.save_logits else None}
            meta["precision"] = PRECISION_NAMES[args.precision]
            timed_on = None
            if args.time is not None:
                timed_on = measure(loaded.model, data, evaluation, placement, args.batch_size,
                                   args.time)
                meta["timing"] = timed_on
            write_results(evaluation.rows, meta, out)
            title = f"{Path(loaded.source).name} on {Path(args.data).name} ({len(data)} images)"
            report(evaluation, out / "accuracy_vs_gflops.png", title, floor=args.plot_floor,
                   timed_on=timed_on, ran=ran)
            print(f"wrote {out / 'results.json'} and {out / 'results.csv'}")
            if args.budget is not None:
                print_choice(evaluation, args.budget)
        distributed.barrier(world)
        if world.is_main:
            partial.clear(out)
    finally:
        distributed.stop(world)
        signal.signal(signal.SIGTERM, sigterm)
    return 0


def onnx_refusals(args: argparse.Namespace) -> None:
    """The flags ``--engine onnxruntime`` cannot serve, each a one-line ``CliError``."""
    if args.device == "cuda":
        raise CliError("--device cuda: --engine onnxruntime computes on the CPU (ONNX "
                       "Runtime's CPU provider); use --device cpu (or auto) or --engine torch")
    if args.time is not None:
        raise CliError("--time: with --engine onnxruntime a width's whole grid is one graph "
                       "run, so its configurations cannot be timed one by one; drop --time, "
                       "or time one budget with 'adaperceiver classify --engine onnxruntime'")


def _width_list(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not widths or any(w < 1 for w in widths) or widths != sorted(set(widths)):
        raise argparse.ArgumentTypeError(f"must be increasing ints >= 1, got {text!r}")
    return widths


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sweep", help=COMMANDS["sweep"][1],
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="checkpoint directory or hub id (default: the bundled "
                   "cluttered-digits model)")
    p.add_argument("--data", default="cluttered", help="a folder with one sub-folder of images "
                   f"per class, or a bundled test set ({', '.join(BUNDLED_SETS)}; default: "
                   "%(default)s)")
    p.add_argument("--labels", choices=LABEL_MODES, default="names", help="how class "
                   "sub-folders map to classes: 'names' matches each folder name to the "
                   "checkpoint's class names or ImageNet synset ids (n01440764 ...); 'sorted' "
                   "takes the sorted folders as classes 0..C-1 (default: %(default)s)")
    p.add_argument("--out", default="adaperceiver-sweep", help="directory for the plot, "
                   "results.json, results.csv and the saved state of an unfinished run "
                   "(default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite results (and a saved "
                   "state) already in --out")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run whose "
                   "state is in --out (same arguments and number of processes)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward; "
                   "batch_mean early exit decides per batch (default: %(default)s)")
    p.add_argument("--workers", type=non_negative_int, default=2, metavar="K",
                   help="DataLoader worker processes decoding images, per process (default: "
                   "%(default)s; 0 decodes in the main process)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="cpu, cuda or auto (CUDA "
                   "when available; default: %(default)s)")
    add_engine_arguments(p, grid=True)
    p.add_argument("--num-tokens", type=positive_int, metavar="N", help="latents of the pass: "
                   "the grid's granularities are the trained ones up to N, then N (default: "
                   "the checkpoint's max_latent_tokens)")
    p.add_argument("--widths", type=_width_list, metavar="M1,M2,...", help="FFN widths "
                   "(mat_dim) to sweep, increasing; exit rows use the last (default: the "
                   "checkpoint's mat_dims)")
    p.add_argument("--budget", type=positive_float, metavar="GFLOPS",
                   help="print the most accurate configuration within this many GFLOPs per "
                   "image, and the depth_tau that meets it on this data")
    p.add_argument("--time", type=positive_int, metavar="BATCHES", help="also measure ms/img "
                   "of every configuration on the first BATCHES batches (default: no timing)")
    p.add_argument("--save-logits", action="store_true", help="write logits.npy to --out: "
                   "the full-width logits of all N latents after each depth, (images, depths, "
                   "classes) float32, rows in the data's order")
    p.add_argument("--checkpoint-every", type=positive_int, default=10, metavar="BATCHES",
                   help="save the counts so far every this many batches (default: "
                   "%(default)s)")
    p.add_argument("--plot-floor", type=float, metavar="PERCENT", help="where the plot's "
                   "accuracy axis starts (default: chance, 100 / classes)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.add_argument("--stop-after", type=positive_int, help=argparse.SUPPRESS)  # tests
    p.set_defaults(func=run)
