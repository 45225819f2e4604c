"""The work behind ``sweep`` (and ``demo``, ``train``): evaluate labelled data over the
budget grid (``evaluate``, or ``evaluate_arrays`` for in-memory arrays), time its rows
(``measure``), print the table, legend, finding and plot (``report``), write
``results.json`` / ``results.csv`` and answer a compute budget. Kept apart from the command
module ``cli.sweep`` so that ``adaperceiver sweep --help`` imports no torch."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub.utils.sha import sha_fileobj

from ..engine import anytime_model
from ..model import ClassificationAdaPerceiver
from . import distributed, logits_file, partial
from .dataset import ArrayImages, Data
from .device import Placement, place
from .distributed import World
from .evaluation import (
    EXIT_POLICIES,
    AnytimeModel,
    Counts,
    Evaluation,
    Grid,
    axis_effects,
    choose,
    finding,
    make_grid,
    make_rows,
    table,
)
from .plot import plot
from .streaming import Settings, loader, run_shard
from .timing import time_rows


def evaluate(model: AnytimeModel, data: Data, grid: Grid, placement: Placement,
             world: World, settings: Settings, *, out: Path | None = None,
             resume: bool = False, fingerprint: dict[str, Any] | None = None,
             logits: Path | None = None) -> tuple[Evaluation, list[int]]:
    """Stream this rank's shard through the grid (checkpointing to ``out``/partial when
    ``out`` is given, continuing a saved state when ``resume``), sum the counts over the
    ranks; returns the evaluation and the number of images of each rank."""
    shard = distributed.batch_range(len(data), settings.batch_size, world)
    state = None if out is None else partial.state_path(out, world)
    done, counts = (partial.load(state, fingerprint, grid) if resume
                    else (0, Counts.zeros(grid)))

    def save(batches: int, sofar: Counts) -> None:
        if state is not None:
            partial.save(state, fingerprint, batches, sofar)

    rows = None
    if logits is not None:
        if world.is_main and not resume:
            logits_file.create(logits, (len(data), len(grid.depths), grid.num_classes))
        distributed.barrier(world)
        rows = logits_file.Rows(logits)
    label = f" (rank {world.rank} of {world.world_size})" if world.distributed else ""
    try:
        counts = run_shard(model, data, grid, shard, placement, settings, done=done,
                           counts=counts, checkpoint=save, logits=rows, label=label)
    finally:
        if rows is not None:
            rows.close()
    total = Counts(**{k: distributed.all_sum(v, world, placement.device)
                      for k, v in counts.tensors().items()})
    per_rank = distributed.gather_ints(len(shard), world, placement.device)
    return Evaluation(make_rows(grid, total), grid, total), per_rank


PRECISION_NAMES = {"fp32": "float32", "bf16": "bfloat16 autocast (weights float32)",
                   "int8": "int8 weight matmuls (ONNX Runtime dynamic quantization: int8 "
                           "weights, uint8 activations ranged per call), the rest float32"}


def grid_model(model: ClassificationAdaPerceiver, grid: Grid, image_size: int, engine: str,
               precision: str) -> tuple[AnytimeModel, str | None]:
    """What computes ``grid`` (``adaperceiver.engine.anytime_model``) and, for ONNX Runtime,
    a line saying what exporting its graphs cost: one anytime graph per width of ``grid``
    is exported here, before the pass, so the progress bar times evaluation only."""
    computes = anytime_model(model, engine=engine, precision=precision)
    if computes is model:
        return model, None
    for m in grid.widths:
        computes.graph(grid.num_tokens, m, None, (image_size, image_size))
    return computes, (f"exported {len(grid.widths)} anytime graph(s) (one per width, "
                      f"{precision}) for ONNX Runtime in {computes.setup_seconds:.1f} s")


def evaluate_arrays(model: ClassificationAdaPerceiver, x: np.ndarray, y: np.ndarray,
                    batch_size: int = 64, progress: bool = False, precision: str = "fp32",
                    engine: str = "torch", computes: AnytimeModel | None = None) -> Evaluation:
    """Every budget of ``model`` on in-memory images x (n, C, H, W) float32 and labels y (n,),
    in this process on the CPU, computed by ``engine`` at ``precision``
    (``adaperceiver.engine.anytime_model``: torch fp32 or bf16 autocast, onnxruntime fp32 or
    int8; the demo's and ``train``'s bundled test set), or by ``computes`` when given (an
    ``AnytimeModel`` already made for that engine and precision)."""
    c = model.config
    data = Data(ArrayImages(x, y), "arrays")
    world = World()
    grid = make_grid(c, c["img_size"])
    if computes is None:
        computes, _ = grid_model(model, grid, c["img_size"], engine, precision)
    evaluation, _ = evaluate(computes, data, grid, place("cpu", autocast_of(precision), world),
                             world, Settings(batch_size=batch_size, progress=progress))
    return evaluation


def autocast_of(precision: str) -> str:
    """The torch-side precision of the grid's ``Placement``: bf16 runs under autocast; fp32
    and int8 (ONNX Runtime computes the logits) count in float32."""
    return "bf16" if precision == "bf16" else "fp32"


def report(evaluation: Evaluation, png: Path, title: str, *, header: Sequence[str] = (),
           floor: float | None = None, timed_on: str | None = None,
           baselines: Sequence[tuple[str, float]] = (), ran: str | None = None) -> None:
    """Print ``header`` lines, the table, its legend (with ``ran``: what computed it) and the
    finding; write the plot with its accuracy axis starting at ``floor`` percent (None:
    chance, 100 / classes) and a horizontal line per (name, accuracy) of ``baselines``."""
    rows = evaluation.rows
    for line in header:
        print(line)
    print(table(rows))
    n = rows[0].num_images
    print(f"* = on the accuracy/compute Pareto front; ! = outside the trained budgets; accuracy "
          f"on {n:,} images with its 95 % Wilson interval"
          + (f"; computed with {ran}" if ran else "")
          + (f"; ms/img measured on {timed_on} (noisy)" if timed_on else ""))
    print("GFLOPs are analytic per image; exit rows run at full N and width, and their GFLOPs "
          "include the confidence check (write + head) after every block up to the exit")
    print(finding(rows))
    print(axis_effects(rows))
    chance = 100 / evaluation.grid.num_classes
    plot(rows, png, title, floor=chance if floor is None else floor, baselines=baselines)
    print(f"wrote the plot to {png}")


def measure(model: ClassificationAdaPerceiver, data: Data, evaluation: Evaluation,
            placement: Placement, batch_size: int, batches: int, progress: bool = True) -> str:
    """Time every row on the first ``batches`` batches of the data; returns what was timed."""
    settings = Settings(batch_size=batch_size)
    timed = [x.to(placement.device) for x, _, _ in
             loader(data, range(min(len(data), batches * batch_size)), settings, placement)]
    images = time_rows(model, timed, evaluation.rows, placement.autocast,
                       placement.device, progress=progress)
    return f"{images} images in {len(timed)} batches of {batch_size} on {placement.device}"


def write_results(rows: list, meta: dict[str, Any], out: Path) -> None:
    partial.write_atomic(out / "results.json",
                         json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]},
                                    indent=1) + "\n")
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
                  f"({100 * acc:.2f}%, mean {cost:.6g} GFLOPs, checks included)")


def sha256_file(path: Path) -> str:
    """The file's sha256, read in chunks (huggingface_hub's, as the hub hashes files)."""
    with open(path, "rb") as f:
        return sha_fileobj(f).hex()


def software() -> dict[str, str]:
    import PIL

    try:
        version = importlib.metadata.version("adaperceiver-reference")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed (run from a checkout)"
    return {"adaperceiver": version, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "cuda": str(torch.version.cuda), "platform": platform.platform()}
