"""Measured milliseconds per image of each configuration (``sweep --time``), kept apart from
the accuracy pass: a fixed set of batches, one forward per batch at each budget (fixed
tokens, depth, width, or confidence early exit), the fastest of ``repeats`` passes over
them, after one warm-up forward."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor
from tqdm import tqdm

from ..model import ClassificationAdaPerceiver
from .evaluation import Row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def budget_of(row: Row) -> dict:
    """The forward keywords of a row's configuration."""
    if row.tau is not None:
        return {"num_tokens": row.num_tokens, "mat_dim": row.width, "depth_tau": row.tau,
                "exit_policy": row.policy}
    return {"num_tokens": row.num_tokens, "depth": int(row.depth), "mat_dim": row.width}


@torch.inference_mode()
def time_rows(model: ClassificationAdaPerceiver, batches: list[Tensor], rows: list[Row],
              autocast: Callable[[], AbstractContextManager], device: torch.device, *,
              repeats: int = 3, progress: bool = True) -> int:
    """Set ``ms_per_image`` of every row, measured on ``batches`` (already on ``device``);
    returns the number of images timed."""
    images = sum(len(x) for x in batches)
    with autocast():
        model(batches[0])  # warm-up
        for row in tqdm(rows, desc="timing", unit="config", disable=not progress,
                        file=sys.stderr):
            budget, best = budget_of(row), float("inf")
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                for x in batches:
                    model(x, **budget)
                _sync(device)
                best = min(best, time.perf_counter() - start)
            row.ms_per_image = 1e3 * best / images
    return images
