"""Analytic FLOPs of one image's forward pass at a fixed budget.

FLOPs = 2 x multiply-accumulates of the matrix products (normalisations, GELU,
softmax, RoPE and residual adds are not counted). Attention counts only the
(query, key) pairs the token mask admits (MASK-3..5), the work the spec asks
for (the CPU kernel also scores masked pairs: one masked call is faster than one
call per block). Symbols: M patches, N latents, D embed_dim, F FFN hidden units,
h = int(mat_dim * ffn_ratio) the blocks' FFN width, C classes, E output_feat_dim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .arguments import check_depth, check_mat_dim, check_num_tokens
from .config import CLASSIFICATION_DEFAULTS, DISTILL_DEFAULTS, is_int, resolve_config
from .masks import attention_plan


def _cross_attention_macs(D: int, queries: int, keys: int) -> int:
    """q and proj on the queries, k and v on the keys, scores and weighted sum."""
    return 2 * queries * D * D + 2 * keys * D * D + 2 * queries * keys * D


def flops(config: Mapping[str, Any], *, num_tokens: int | None = None,
          mat_dim: int | None = None, depth: int | None = None,
          image_size: int | tuple[int, int] | None = None) -> float:
    """FLOPs per image with N latents, FFN width mat_dim, ``depth`` blocks and square
    ``image_size`` (or (H, W)); None means the config's default for each."""
    defaults = DISTILL_DEFAULTS if "output_feat_dim" in config else CLASSIFICATION_DEFAULTS
    c = resolve_config(defaults, config)
    N = check_num_tokens(num_tokens, c)
    widths = check_mat_dim(mat_dim, c, 1) if mat_dim is None or is_int(mat_dim) else None
    if mat_dim is not None and widths is None:
        raise TypeError(f"mat_dim must be an int in 1..{c['embed_dim']} or None, got {mat_dim!r}")
    blocks = check_depth(depth, c)
    H, W = _image_size(image_size, c)
    P, D, C = c["patch_size"], c["embed_dim"], c["num_classes"]
    F = int(D * c["ffn_ratio"])
    h = F if widths is None else int(widths[0] * c["ffn_ratio"])
    M = (H // P) * (W // P)

    macs = M * c["in_channels"] * P * P * D  # patch projection
    if c["use_embed_ffn"]:
        macs += 2 * M * D * F
    macs += _cross_attention_macs(D, N, M)  # read
    plan = attention_plan(c["attn_layer"], c["block_mask"], N, c["mask_token_grans"])
    per_block = 4 * N * D * D + 2 * plan.attended_pairs() * D + 2 * N * D * h
    macs += blocks * per_block
    macs += _cross_attention_macs(D, 1, N)  # write
    macs += D * F + F * C if c["use_output_ffn"] else D * C
    if "output_feat_dim" in c:
        macs += M * D * D + _cross_attention_macs(D, M, N)  # feature queries and write
        macs += M * (D * F + F * c["output_feat_dim"])
    return float(2 * macs)


def _image_size(image_size: Any, c: Mapping[str, Any]) -> tuple[int, int]:
    if image_size is None:
        return c["img_size"], c["img_size"]
    size = (image_size, image_size) if is_int(image_size) else tuple(image_size)
    P = c["patch_size"]
    if len(size) != 2 or not all(is_int(s) and s >= P and s % P == 0 for s in size):
        raise ValueError(f"image_size must be an int or (H, W) of positive multiples of "
                         f"patch_size {P}, got {image_size!r}")
    return int(size[0]), int(size[1])
