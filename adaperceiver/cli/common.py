"""What the commands share: argument types that name the flag in their errors, and the one
error type a command raises for bad input (``CliError``)."""

from __future__ import annotations

import argparse
import math


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


def positive_float(text: str) -> float:
    """A finite real > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite real >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A real in [0, 1] (a confidence threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value
