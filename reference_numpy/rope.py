"""Rotary position embedding (RoPE) of the latent tokens, with linear position interpolation.

Clauses ROPE-1..3. Where RoPE is applied (ROPE-4) is decided in ``model.py``.
"""

from __future__ import annotations

import numpy as np


def rope_frequencies(
    head_dim: int, num_tokens: int, theta: float, max_latent_tokens: int
) -> np.ndarray:
    """Rotation frequencies f_i, i = 0 .. hd/2 - 1 (ROPE-1, ROPE-3).

    f_i = theta^(-2i / hd). Linear position interpolation (upstream: "NTK scaling"):
    when N > L = max_latent_tokens every f_i is divided by lambda = N / L; for N <= L
    the frequencies are unscaled.
    """
    freqs = float(theta) ** (-np.arange(0, head_dim, 2) / head_dim)  # (hd/2,)
    if num_tokens > max_latent_tokens:
        freqs = freqs / (num_tokens / max_latent_tokens)
    return freqs


def rope_angles(
    num_tokens: int, head_dim: int, theta: float, max_latent_tokens: int
) -> np.ndarray:
    """Rotation angles (N, hd/2): angle[p, i] = p * f_i, positions p = 0 .. N-1 (ROPE-1, ROPE-2)."""
    positions = np.arange(num_tokens, dtype=np.float64)
    return np.outer(positions, rope_frequencies(head_dim, num_tokens, theta, max_latent_tokens))


def apply_rope(x: np.ndarray, angles: np.ndarray, num_heads: int) -> np.ndarray:
    """Rotate adjacent channel pairs of every head by the token's angles (ROPE-1).

    x (B, N, D) with heads laid out as reshape(B, N, H, hd); angles (N, hd/2).
    Within each head the pair (x_{2i}, x_{2i+1}) is the complex number x_{2i} + i x_{2i+1}
    multiplied by exp(i * angle[p, i]):
    x'_{2i} = x_{2i} cos - x_{2i+1} sin,  x'_{2i+1} = x_{2i} sin + x_{2i+1} cos.
    """
    B, N, D = x.shape
    pairs = x.reshape(B, N, num_heads, D // num_heads // 2, 2)  # (B, N, H, hd/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (B, N, H, hd/2) each
    cos = np.cos(angles)[None, :, None, :]  # (1, N, 1, hd/2)
    sin = np.sin(angles)[None, :, None, :]  # (1, N, 1, hd/2)
    rotated = np.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return rotated.reshape(B, N, D)  # (B, N, H, hd/2, 2) -> (B, N, D)
