"""Token masks of the processing blocks' self-attention (clauses MASK-1..5).

A mask is a boolean (N, N) array, True where query latent i may attend key latent j.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MASK_TYPES = ("block", "causal", "none")


def granularities(token_grans: Sequence[int], num_tokens: int) -> list[int]:
    """Granularities used for N latents (MASK-2).

    The values <= N, in order, with N appended when N exceeds the last kept value
    (or when none is kept). E.g. ([8, 16, 32], 20) -> [8, 16, 20].
    """
    kept = [int(g) for g in token_grans if g <= num_tokens]
    if not kept or num_tokens > kept[-1]:
        kept.append(num_tokens)
    return kept


def block_mask(grans: Sequence[int]) -> np.ndarray:
    """Block mask (MASK-3) over N = grans[-1] latents.

    With g_0 = 0, query i in block b (g_{b-1} <= i < g_b) attends key j iff j < g_b:
    each latent sees its own block and every earlier block.
    """
    num_tokens = grans[-1]
    block_end = np.empty(num_tokens, dtype=np.int64)  # g_b of the block holding each query
    start = 0
    for end in grans:
        block_end[start:end] = end
        start = end
    keys = np.arange(num_tokens)
    return keys[None, :] < block_end[:, None]


def causal_mask(num_tokens: int) -> np.ndarray:
    """Causal mask (MASK-4): query i attends key j iff j <= i."""
    positions = np.arange(num_tokens)
    return positions[None, :] <= positions[:, None]


def full_mask(num_tokens: int) -> np.ndarray:
    """Mask type "none" (MASK-5): every query attends every key."""
    return np.ones((num_tokens, num_tokens), dtype=bool)


def token_mask(
    attn_layer: str, mask_type: str, num_tokens: int, token_grans: Sequence[int]
) -> np.ndarray | None:
    """Mask used by the processing blocks, or None for unmasked attention (MASK-1).

    With attn_layer "full" the blocks ignore the mask whatever ``mask_type`` says;
    with "flex" the mask of ``mask_type`` is built ("block" uses
    ``granularities(token_grans, N)``).
    """
    if attn_layer == "full":
        return None
    if attn_layer != "flex":
        raise ValueError(f"attn_layer must be one of ['flex', 'full'], got {attn_layer!r}")
    if mask_type == "block":
        return block_mask(granularities(token_grans, num_tokens))
    if mask_type == "causal":
        return causal_mask(num_tokens)
    if mask_type == "none":
        return full_mask(num_tokens)
    raise ValueError(f"block_mask must be one of {list(MASK_TYPES)}, got {mask_type!r}")
