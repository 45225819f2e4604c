"""What the commands share: argument types that name the flag in their errors, and the one
error type a command raises for bad input (``CliError``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
