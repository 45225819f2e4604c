"""Timing on a shared machine: interleaved rounds, medians with their spread, per-round
ratios and the load average."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

SETTLE_SECONDS = 0.2  # untimed pause before every call (interleaved)


def interleaved(fns: dict[Any, Callable[[], object]], rounds: int) -> dict[Any, list[float]]:
    """Wall times of each function over ``rounds`` rounds; every round calls all of them in
    turn (after one warm-up call each), so drift of a shared machine hits all alike.

    Each call starts after an untimed pause of ``SETTLE_SECONDS`` (read at the call), so
    that one runtime's idle worker threads do not compete with the next call: ONNX
    Runtime's spin for a while after a run, and a torch forward started right after one
    took about 10 % longer at batch 1 (3-4 % after a 0.02 s pause, none after 0.2 s;
    docs/performance.md)."""
    settle = SETTLE_SECONDS
    for fn in fns.values():
        time.sleep(settle)
        fn()
    times: dict[Any, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def spread(values: list[float], scale: float = 1.0, fmt: str = ".0f") -> str:
    """'median [min..max]' of ``values`` times ``scale``."""
    v = sorted(x * scale for x in values)
    return f"{statistics.median(v):{fmt}} [{v[0]:{fmt}}..{v[-1]:{fmt}}]"


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios num_i / den_i (the pairs ran in the same round)."""
    return [a / b for a, b in zip(num, den, strict=True)]


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def add_round_arguments(parser: argparse.ArgumentParser, quick: str) -> None:
    """``--quick`` (help ``quick``) and ``--rounds R`` (interleaved timing rounds, default 7)."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
