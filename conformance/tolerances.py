"""The tolerance table (spec clause TOL-1, ``spec/tolerances.md``) and the error measure.

A port's output ``a`` matches the oracle's ``b`` when

    rel(a, b) = max|a - b| / max(max|b|, TINY)  <=  rtol[dtype]

with one scalar error per tensor (logits, features or a stage). This is the
only place the suite reads tolerances from; a golden case or a port may
loosen them (``Tolerance.reason`` says why), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .profiles import PROFILES

# TOL-1: relative tolerance by the port's precision profile (conformance.profiles says how
# each was measured).
RTOL: dict[str, float] = {name: p.rtol for name, p in PROFILES.items()}
# Guards the denominator of the relative error against all-zero references.
TINY = 1e-30


@dataclass(frozen=True)
class Tolerance:
    """A relative tolerance and where it comes from (shown in the report)."""

    rtol: float
    source: str


def default_tolerance(dtype: str) -> Tolerance:
    """The TOL-1 tolerance for a compute dtype; ``ValueError`` for an unknown dtype."""
    if dtype not in RTOL:
        raise ValueError(f"dtype must be one of {sorted(RTOL)} (TOL-1), got {dtype!r}")
    return Tolerance(RTOL[dtype], f"TOL-1 {dtype}")


def errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """``(max_abs, max_rel)`` with rel = max|a - b| / max(max|b|, TINY); inf if ``a`` is not finite.

    Both arrays are compared in float64; shapes must already agree.
    """
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    if not np.all(np.isfinite(a)):
        return float("inf"), float("inf")
    max_abs = float(np.max(np.abs(a - b)))
    return max_abs, max_abs / max(float(np.max(np.abs(b))), TINY)


def argmax_mismatches(actual: np.ndarray, expected: np.ndarray, rtol: float) -> list[int]:
    """Samples whose argmax class differs from the reference's (TOL-1, discrete results).

    Logits are (B, 1, C). A sample is excused when the reference's two largest
    logits differ by at most rtol * max|expected| (a near tie).
    """
    a = np.asarray(actual, dtype=np.float64)[:, 0, :]  # (B, C)
    b = np.asarray(expected, dtype=np.float64)[:, 0, :]  # (B, C)
    if b.shape[-1] < 2:
        return []
    top2 = np.sort(b, axis=-1)[:, -2:]  # (B, 2)
    tie = top2[:, 1] - top2[:, 0] <= rtol * max(float(np.max(np.abs(b))), TINY)
    return [i for i in range(b.shape[0]) if a[i].argmax() != b[i].argmax() and not tie[i]]
