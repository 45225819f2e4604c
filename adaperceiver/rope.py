"""Real-valued rotary position embedding (RoPE) of the latent tokens, with NTK scaling.

Clauses ROPE-1..3 (where RoPE is applied, ROPE-4, is decided by the callers).
The tables are computed in float64 and cast to the compute dtype, which is never
below float32: a bf16/fp16 input is rotated in float32 and cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_tables(num_tokens: int, head_dim: int, theta: float, max_latent_tokens: int,
                device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles, each (N, hd/2) float64.

    f_i = theta^(-2i/hd), i < hd/2 (ROPE-1); angle[p, i] = p * f_i for positions
    p = 0..N-1 (ROPE-2); when N > L = max_latent_tokens every f_i is divided by
    N / L (ROPE-3, NTK scaling). For N <= L the frequencies do not depend on N, so the
    tables are the first N rows of the tables for L positions (every entry is computed
    on its own, so the rows are the same bits).
    """
    if num_tokens > max_latent_tokens:
        return _angle_tables(num_tokens, head_dim, theta, num_tokens / max_latent_tokens, device)
    cos, sin = _unscaled_tables(max_latent_tokens, head_dim, theta, device)
    return cos[:num_tokens], sin[:num_tokens]  # (L, hd/2) -> (N, hd/2)


def _angle_tables(num_tokens: int, head_dim: int, theta: float, ntk_scale: float | None,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of p * f_i / ntk_scale for p < num_tokens, i < hd/2 (ROPE-1..3)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim
    freqs = float(theta) ** -exponents  # (hd/2,)
    if ntk_scale is not None:
        freqs = freqs / ntk_scale
    positions = torch.arange(num_tokens, dtype=torch.float64, device=device)
    angles = torch.outer(positions, freqs)  # (N, hd/2)
    return angles.cos(), angles.sin()


@torch.compiler.assume_constant_result
def _unscaled_tables(length: int, head_dim: int, theta: float,
                     device: torch.device) -> tuple[Tensor, Tensor]:
    """The tables of positions 0..length-1 without NTK scaling. Its arguments are the
    config's numbers, never N, so ``torch.compile`` may run it once while tracing and
    keep the result as a constant; otherwise inductor fuses the float64 cos/sin into
    every rotation and recomputes them per rotated element (measured: one 63 ms kernel
    per call, docs/performance.md). A constant-result function cannot take N: after a
    second N torch makes it a symbolic int."""
    return _angle_tables(length, head_dim, theta, None, device)


def rope_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype RoPE is computed in for inputs of ``dtype``: float64 stays, the rest float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs (2i, 2i+1) of every head (ROPE-1).

    x (B, H, N, hd); cos, sin (N, hd/2) already in ``rope_dtype(x.dtype)``.
    x'_{2i} = x_{2i} cos - x_{2i+1} sin,  x'_{2i+1} = x_{2i} sin + x_{2i+1} cos,
    which is the complex product (x_{2i} + i x_{2i+1}) (cos + i sin): eagerly one
    complex multiply reads x once (the same products and sums as the real formula);
    while tracing (torch.compile, export) the real formula is used, which compilers
    fuse and exporters support.
    """
    work = x.to(cos.dtype)
    pairs = work.unflatten(-1, (-1, 2))  # (B, H, N, hd) -> (B, H, N, hd/2, 2)
    if torch.compiler.is_compiling():
        even, odd = pairs.unbind(-1)  # (B, H, N, hd/2) each
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    else:
        offsets = (*pairs.stride()[:-1], pairs.storage_offset())
        if pairs.stride(-1) != 1 or any(s % 2 for s in offsets):
            pairs = pairs.contiguous()  # view_as_complex needs (re, im) adjacent
        turn = torch.complex(cos, sin)  # (N, hd/2): e^{i angle}
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * turn)
    return rotated.flatten(-2).to(x.dtype)  # (B, H, N, hd/2, 2) -> (B, H, N, hd)
