"""What the commands share: argument types that name the flag in their errors, the checks
of budget flags against a checkpoint, the memory available now, and the one error type a
command raises for bad input (``CliError``). Imports no torch (argument parsing stays
instant)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..config import MAX_TOKENS

DEVICES = ("auto", "cpu", "cuda")  # sweep's --device (cli.device.place)
LABEL_MODES = ("names", "sorted")  # sweep's --labels (cli.dataset.image_folder)
BUNDLED_SETS = ("cluttered", "digits")  # sweep's bundled --data sets (cli.dataset.BUNDLED)


class CliError(Exception):
    """Bad input to a command: printed as one line on stderr, exit status 1."""


def _integer(text: str, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1 (and at most 2**31 - 1: bigger counts are never meaningful here)."""
    return _integer(text, 1, 2**31 - 1)


def non_negative_int(text: str) -> int:
    return _integer(text, 0, 2**31 - 1)


def integer(text: str) -> int:
    """Any int; its range depends on the checkpoint (``check_budget``)."""
    return _integer(text, -(2**63), 2**63 - 1)


def num_tokens(text: str) -> int:
    """Latent tokens N: an int in 1..65536 (LIM-2)."""
    return _integer(text, 1, MAX_TOKENS)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads(text: str) -> int:
    """A thread count in 1..usable_cpus(): more threads than CPUs only slow torch down, and
    a huge count aborts its OpenMP runtime."""
    try:
        return _integer(text, 1, usable_cpus())
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (the CPUs this process may use)") from None


def check_budget(depth: int | None, mat_dim: int | None, config: Mapping[str, Any]) -> None:
    """``--depth`` in 1..config depth and ``--mat-dim`` in 1..embed_dim of this checkpoint
    (ARG-2, ARG-3), one message per flag naming the checkpoint's range."""
    for flag, value, key in (("--depth", depth, "depth"), ("--mat-dim", mat_dim, "embed_dim")):
        if value is not None and not 1 <= value <= config[key]:
            raise CliError(f"{flag} must be in 1..{config[key]} for this checkpoint (config "
                           f"{key} {config[key]}), got {value}")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (MemAvailable of /proc/meminfo,
    else psutil's when installed), or None where neither says."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _real(text: str, ok: Callable[[float], bool], allowed: str) -> float:
    """``text`` as a float for which ``ok`` holds, else an error saying what is ``allowed``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite real > 0."""
    return _real(text, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """A finite real >= 0."""
    return _real(text, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def fraction(text: str) -> float:
    """A real in [0, 1] (a confidence threshold)."""
    return _real(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")
