"""Resumable sweeps: each rank's counts so far, checkpointed in ``--out/partial/`` every few
batches and on an interrupt (SIGINT, SIGTERM), so ``--resume`` continues after the last
batch it holds without recounting or losing an image.

One JSON file per rank, ``rank-R-of-W.json``: the ``fingerprint`` of the run (checkpoint
sha256, data hash and size, batch size, world size, grid, precision), ``batches_done``
(a prefix of the rank's batches, see ``distributed.batch_range``) and the ``Counts`` of
those batches. Each write goes to a temporary file in the same folder, is flushed to disk
and renamed over the previous one (``os.replace``), so a killed process leaves either the
previous state or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import CliError
from .distributed import World
from .evaluation import Counts, Grid

FOLDER = "partial"


def state_path(out: Path, world: World) -> Path:
    return out / FOLDER / f"rank-{world.rank}-of-{world.world_size}.json"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path, fingerprint: dict[str, Any], batches_done: int, counts: Counts) -> None:
    write_atomic(path, json.dumps({"fingerprint": fingerprint, "batches_done": batches_done,
                                   "counts": counts.to_json()}))


def load(path: Path, fingerprint: dict[str, Any], grid: Grid) -> tuple[int, Counts]:
    """(batches_done, counts) of a saved state of this same run, else a one-line error."""
    if not path.exists():
        others = sorted(p.name for p in path.parent.glob("rank-*.json"))
        raise CliError(f"--resume: no saved state {path}" + (
            f" (there is {', '.join(others)}: resume with the same number of processes)"
            if others else " (nothing to resume; run without --resume)"))
    try:
        state = json.loads(path.read_text("utf-8"))
        saved = state["fingerprint"]
        changed = [k for k in fingerprint if saved.get(k) != fingerprint[k]]
        if changed:
            k = changed[0]
            raise CliError(f"--resume: {path} was saved by a different run ({k} was "
                           f"{saved.get(k)!r}, now {fingerprint[k]!r}); use --force to start "
                           "over")
        return int(state["batches_done"]), Counts.from_json(state["counts"], grid)
    except (ValueError, KeyError, TypeError) as err:
        raise CliError(f"--resume: {path} is not a readable saved state ({err})") from None


def clear(out: Path) -> None:
    shutil.rmtree(out / FOLDER, ignore_errors=True)
