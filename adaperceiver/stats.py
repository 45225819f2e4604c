"""Confidence intervals of measured accuracies.

``wilson_interval(k, n, z)``: the score interval of Wilson (1927) for a binomial proportion
p = k / n (k successes in n trials):

    centre = (p + z^2 / 2n) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

and the interval is [centre - half, centre + half], which always lies inside [0, 1] and is
not degenerate at k = 0 or k = n (unlike the normal-approximation interval). z = 1.96 gives
the two-sided 95 % interval. Newcombe (1998), "Two-sided confidence intervals for the single
proportion: comparison of seven methods", Statistics in Medicine 17:857-872, method 3,
compares it with six others and tabulates examples.

This module does not import torch.
"""

from __future__ import annotations

import math

from .config import is_int, is_real


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """(low, high) of the Wilson score interval of k successes in n trials (see the module
    docstring); z = 1.96 is the 95 % two-sided interval."""
    if not (is_int(n) and n >= 1):
        raise ValueError(f"n must be an int >= 1 (the number of trials), got {n!r}")
    if not (is_int(k) and 0 <= k <= n):
        raise ValueError(f"k must be an int in 0..n = 0..{n} (the successes), got {k!r}")
    if not (is_real(z) and math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a finite real > 0, got {z!r}")
    p, z2 = k / n, float(z) ** 2
    scale = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
