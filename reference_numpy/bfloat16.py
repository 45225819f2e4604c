"""bfloat16 <-> float bit conversion (NumPy has no bfloat16 dtype). Spec clause CKPT-4.

A bfloat16 is the upper 16 bits of an IEEE float32: sign, 8 exponent bits, 7
mantissa bits. Decoding is exact: ``float32_bits = bf16_bits << 16``.
Encoding rounds the float32 value to the nearest bfloat16, ties to even
(what PyTorch's ``tensor.to(torch.bfloat16)`` does for finite values).
"""

from __future__ import annotations

import numpy as np


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 values (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def float_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Float values -> uint16 bfloat16 bit patterns, via float32, round-to-nearest-even.

    Finite inputs only (NaN payloads are not preserved); values that round past
    the largest bfloat16 become +-inf.
    """
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds half-way cases to the even neighbour.
    lowest_kept_bit = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = bits.astype(np.uint64) + np.uint64(0x7FFF) + lowest_kept_bit
    return (rounded >> np.uint64(16)).astype(np.uint16)
