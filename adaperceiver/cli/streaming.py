"""One pass of ``sweep`` over this rank's shard of the data: a ``DataLoader`` (worker
processes decode and preprocess while the model computes) feeds batches to
``evaluation.batch_counts``; only the running ``Counts`` are kept, so memory does not grow
with the number of images. The counts are handed to ``checkpoint`` every
``checkpoint_every`` batches and on an interrupt (then the interrupt goes on)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .common import CliError
from .dataset import Data
from .device import Placement
from .evaluation import AnytimeModel, Counts, Grid, batch_counts
from .logits_file import Rows


@dataclass
class Settings:
    """How the pass runs: images per batch (batch_mean exit decides per batch), DataLoader
    worker processes (0: decode in this process), batches between checkpoints, a progress
    bar, and ``stop_after``: raise KeyboardInterrupt after that many batches of this pass
    (what an interrupt does, at a known point; for tests)."""

    batch_size: int = 64
    workers: int = 0
    checkpoint_every: int = 10
    progress: bool = True
    stop_after: int | None = None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def fixed_mmap_threshold(size: int = 1 << 17) -> bool:
    """Make glibc's malloc serve every allocation of ``size`` bytes or more with its own
    mmap, returned to the system when freed (mallopt M_MMAP_THRESHOLD; True when set).

    By default glibc raises that threshold each time a large block is freed (up to 32 MiB)
    and then keeps freed heap memory for reuse, so a long pass over many batches of large
    tensors ends with tens of MiB more resident memory than a short one (measured with
    ``adaperceiver.bench_sweep``: 393 MiB after 1,000 images, 498 after 20,000). A fixed
    threshold keeps resident memory flat. No effect on other C libraries. DataLoader
    workers forked afterwards inherit the setting."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False


def loader(data: Data, indices: range, settings: Settings, placement: Placement) -> DataLoader:
    """Batches of ``indices`` in order (no shuffling, no padding)."""
    return DataLoader(Subset(data.dataset, indices), batch_size=settings.batch_size,
                      shuffle=False, num_workers=settings.workers,
                      pin_memory=placement.device.type == "cuda")


def run_shard(model: AnytimeModel, data: Data, grid: Grid, shard: range,
              placement: Placement, settings: Settings, *, done: int, counts: Counts,
              checkpoint: Callable[[int, Counts], None], logits: Rows | None = None,
              label: str = "") -> Counts:
    """Evaluate the batches of ``shard`` after the first ``done`` (already in ``counts``) and
    return the counts of the whole shard."""
    bs = settings.batch_size
    todo = range(min(shard.start + done * bs, shard.stop), shard.stop)
    bar = tqdm(total=len(shard), initial=len(shard) - len(todo), desc=f"evaluating{label}",
               unit="img", disable=not settings.progress, file=sys.stderr, smoothing=0.1)
    state = (done, counts)  # replaced in one assignment, so an interrupt never splits it
    try:
        for step, (x, y, errors) in enumerate(loader(data, todo, settings, placement), 1):
            failed = next((e for e in errors if e), None)
            if failed:
                raise CliError(failed)
            x = x.to(placement.device, non_blocking=True)
            y = y.to(placement.device, non_blocking=True)
            with torch.inference_mode(), placement.autocast():
                batch, by_depth = batch_counts(model, x, y, grid)
            if logits is not None:
                logits.write(shard.start + state[0] * bs, by_depth.float().cpu().numpy())
            state = (state[0] + 1, state[1] + batch)
            bar.update(len(y))
            if state[0] % settings.checkpoint_every == 0:
                checkpoint(*state)
            if settings.stop_after is not None and step >= settings.stop_after:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        checkpoint(*state)
        raise
    finally:
        bar.close()
    checkpoint(*state)
    return state[1]
