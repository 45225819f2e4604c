"""Shared setup of the hostile-input tests: tiny checkpoints, header surgery and bounded
subprocesses (a wall-clock timeout, and the child's own peak RSS reported back).

The findings these tests pin are in ``robustness-findings.md`` of the project's reference
material (ids F1..F10, N1..N8); each test names its finding and spec clause.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import reference_numpy as rn

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = "model.safetensors"


def make_checkpoint(directory: Path, *, dtype: str = "float32", **overrides: Any) -> Path:
    """A tiny valid checkpoint (oracle config and weights); returns the directory."""
    config = rn.tiny_config(**overrides)
    rn.save_checkpoint(directory, config, rn.random_weights(config), dtype=dtype)
    return directory


def edit_config(directory: Path, **changes: Any) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def read_header(directory: Path) -> tuple[dict, bytes]:
    """(header dict, data buffer) of the checkpoint's model.safetensors."""
    raw = (directory / WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_header(directory: Path, header: dict | str, data: bytes) -> None:
    """Rewrite model.safetensors with ``header`` (a dict, or raw JSON text) and ``data``."""
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    (directory / WEIGHTS).write_bytes(struct.pack("<Q", len(raw)) + raw + data)


# The child prints one JSON line: the outcome and its own peak RSS in kB. VmHWM belongs to
# the child's own address space; ru_maxrss would include the forked parent's (pytest's).
_CHILD = """
import json, resource, sys
def _peak_kb():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def _outcome():
{body}
try:
    result = {{"outcome": _outcome()}}
except BaseException as err:  # reported, never re-raised: the test judges the type
    result = {{"error": type(err).__name__, "message": str(err)[:2000], "length": len(str(err))}}
result["peak_kb"] = _peak_kb()
print(json.dumps(result))
"""


def run_bounded(body: str, *, timeout: float) -> dict[str, Any]:
    """Run ``body`` (the indented statements of a function returning a JSON-able value) in
    a fresh interpreter killed after ``timeout`` seconds; the parsed result line.

    Raises ``AssertionError`` on a timeout (the hang the findings describe) or a crash.
    """
    code = _CHILD.format(body="\n".join("    " + line for line in body.strip().splitlines()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"did not finish within {timeout} s (hang)") from err
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"child failed: {done.stderr[-2000:]}"
    return json.loads(lines[-1])


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) if the block runs longer than ``seconds`` (main thread only)."""
    def expire(signum, frame):
        raise TimeoutError(f"exceeded the {seconds} s bound")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
