"""Analytic FLOPs of one image's forward pass at a fixed budget.

FLOPs = 2 x multiply-accumulates of the matrix products (normalisations, GELU,
softmax, RoPE and residual adds are not counted). Attention counts only the
(query, key) pairs the token mask admits (MASK-3..5), the work the spec asks
for (the CPU kernel also scores masked pairs: one masked call is faster than one
call per block). Symbols: M patches, N latents, D embed_dim, F FFN hidden units,
h = int(mat_dim * ffn_ratio) the blocks' FFN width, C classes, E output_feat_dim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arguments import check_depth, check_mat_dim, check_num_tokens, check_token_grans
from .config import CLASSIFICATION_DEFAULTS, DISTILL_DEFAULTS, is_int, resolve_config
from .masks import attention_plan, granularities


def _cross_attention_macs(D: int, queries: int, keys: int) -> int:
    """q and proj on the queries, k and v on the keys, scores and weighted sum."""
    return 2 * queries * D * D + 2 * keys * D * D + 2 * queries * keys * D


def flops(config: Mapping[str, Any], *, num_tokens: int | None = None,
          mat_dim: int | None = None, depth: int | None = None,
          image_size: int | tuple[int, int] | None = None,
          token_grans: Sequence[int] | None = None) -> float:
    """FLOPs per image with N latents, FFN width mat_dim, ``depth`` blocks, square
    ``image_size`` (or (H, W)) and the mask's ``token_grans``; None means the config's
    default for each."""
    c = _config(config)
    N = check_num_tokens(num_tokens, c)
    h = _hidden(c, mat_dim)
    blocks = check_depth(depth, c)
    M = _patches(c, image_size)
    grans = check_token_grans(token_grans, c)
    return float(2 * _single_run_macs(c, M, N, h, blocks, grans))


def exit_flops(config: Mapping[str, Any], exit_depth: int, *, num_tokens: int | None = None,
               mat_dim: int | None = None, image_size: int | tuple[int, int] | None = None,
               token_grans: Sequence[int] | None = None) -> float:
    """FLOPs per image of a confidence-exit run that stops after block e = ``exit_depth``
    (EXIT-1): the trunk through e blocks plus the write and head evaluated after each of the
    e blocks to decide whether to stop, e x (write + head), i.e.
    ``flops(depth=e) + (e - 1) x (write + head)``. (The logits of the exit depth are those
    of its check: EXIT-4 needs only their values, so no recomputation is counted.)"""
    c = _config(config)
    N = check_num_tokens(num_tokens, c)
    e = check_depth(exit_depth, c)
    check = _cross_attention_macs(c["embed_dim"], 1, N) + _head_macs(c)  # write and head
    return flops(c, num_tokens=N, mat_dim=mat_dim, depth=e, image_size=image_size,
                 token_grans=token_grans) + float(2 * (e - 1) * check)


def _single_run_macs(c: Mapping[str, Any], M: int, N: int, h: int, blocks: int,
                     grans: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass (trunk, write, head; distill features)."""
    macs = _trunk_macs(c, M, N, h, blocks, grans)
    macs += _cross_attention_macs(c["embed_dim"], 1, N) + _head_macs(c)  # write and head
    if "output_feat_dim" in c:
        D, F = c["embed_dim"], int(c["embed_dim"] * c["ffn_ratio"])
        macs += M * D * D + _cross_attention_macs(D, M, N)  # feature queries and write
        macs += M * (D * F + F * c["output_feat_dim"])
    return macs


def _config(config: Mapping[str, Any]) -> dict[str, Any]:
    defaults = DISTILL_DEFAULTS if "output_feat_dim" in config else CLASSIFICATION_DEFAULTS
    return resolve_config(defaults, config)


def _hidden(c: Mapping[str, Any], mat_dim: Any) -> int:
    """h = int(mat_dim * ffn_ratio) of one scalar width (MAT-1); None means F (MAT-4)."""
    widths = check_mat_dim(mat_dim, c, 1) if mat_dim is None or is_int(mat_dim) else None
    if mat_dim is not None and widths is None:
        raise TypeError(f"mat_dim must be an int in 1..{c['embed_dim']} or None, got {mat_dim!r}")
    return int(c["embed_dim"] * c["ffn_ratio"]) if widths is None else int(
        widths[0] * c["ffn_ratio"])


def _patches(c: Mapping[str, Any], image_size: Any) -> int:
    H, W = _image_size(image_size, c)
    return (H // c["patch_size"]) * (W // c["patch_size"])


def _head_macs(c: Mapping[str, Any]) -> int:
    """The output adapter on one output token (HEAD-1)."""
    D, C = c["embed_dim"], c["num_classes"]
    F = int(D * c["ffn_ratio"])
    return D * F + F * C if c["use_output_ffn"] else D * C


def _trunk_macs(c: Mapping[str, Any], M: int, N: int, h: int, blocks: int,
                grans: Sequence[int]) -> int:
    """Patch embedding, read and ``blocks`` processing blocks of N latents at FFN width h."""
    P, D = c["patch_size"], c["embed_dim"]
    F = int(D * c["ffn_ratio"])
    macs = M * c["in_channels"] * P * P * D  # patch projection
    if c["use_embed_ffn"]:
        macs += 2 * M * D * F
    macs += _cross_attention_macs(D, N, M)  # read
    plan = attention_plan(c["attn_layer"], c["block_mask"], N, grans)
    per_block = 4 * N * D * D + 2 * plan.attended_pairs() * D + 2 * N * D * h
    return macs + blocks * per_block


def one_pass_exact(config: Mapping[str, Any], num_tokens: int) -> bool:
    """ANY-3: one pass of N latents serves every granularity exactly when the prefix property
    holds (MASK-6): attn_layer "flex" with the "block" or "causal" mask, and N <= L."""
    return (config["attn_layer"] == "flex" and config["block_mask"] in ("block", "causal")
            and num_tokens <= config["max_latent_tokens"])


@dataclass(frozen=True)
class AnytimeFlops:
    """Analytic FLOPs of an anytime grid (ANY-1..5), per image.

    ``entries`` (K, G): entry [l, j] is ``flops(num_tokens=G[j], depth=l+1, ...)``, the
    cost of that configuration as a single run. ``grid``: the cost of computing the whole
    grid the way ``anytime`` does (one pass, or one pass per granularity for the exact
    fallback, plus K x G write-outs). ``granularities``: G. ``one_pass``: ANY-3 holds.
    """

    entries: np.ndarray
    grid: float
    granularities: tuple[int, ...]
    one_pass: bool


def anytime_flops(config: Mapping[str, Any], *, num_tokens: int | None = None,
                  mat_dim: int | Sequence[int] | None = None,
                  token_grans: Sequence[int] | None = None,
                  image_size: int | tuple[int, int] | None = None) -> AnytimeFlops:
    """FLOPs per image of the anytime grid and of each of its entries (ANY-1..5).

    A per-sample ``mat_dim`` list gives the mean over its samples. The grid cost counts,
    per pass of n latents and per depth, the prefix write-outs of ``anytime``: scores
    s_j . u_hj (H n D), the prefix-masked weighted sums of the normalised latents
    (H |G| n D, every prefix over all n rows, masked), then per granularity the value
    and output projections (2 D^2) and the head. The write query's fold into the key
    projection (N D^2, once per call whatever the batch) is not counted per image.
    """
    c = _config(config)
    N = check_num_tokens(num_tokens, c)
    grans_arg = check_token_grans(token_grans, c)
    widths = Counter([mat_dim] if mat_dim is None or is_int(mat_dim) else list(mat_dim))
    if not widths:
        raise ValueError(f"mat_dim must be an int, a non-empty list of ints or None, "
                         f"got {mat_dim!r}")
    M = _patches(c, image_size)
    K, D, H = c["depth"], c["embed_dim"], c["num_heads"]
    grans = granularities(grans_arg, N)
    one_pass = one_pass_exact(c, N)

    def writes(n: int, G: int) -> int:  # K depths x G prefixes of n latents
        return K * (H * n * D + H * G * n * D + G * (2 * D * D + _head_macs(c)))

    entries = np.zeros((K, len(grans)))
    grid = 0.0
    for m, rows in widths.items():  # each distinct width once, weighted by its rows
        h = _hidden(c, m)
        single = [[_single_run_macs(c, M, g, h, d, grans_arg) for g in grans]
                  for d in range(1, K + 1)]
        entries += rows * 2 * np.array(single, dtype=np.float64)
        if one_pass:
            grid += rows * 2 * (_trunk_macs(c, M, N, h, K, grans_arg) + writes(N, len(grans)))
        else:
            grid += rows * 2 * sum(_trunk_macs(c, M, g, h, K, grans_arg) + writes(g, 1)
                                   for g in grans)
    B = widths.total()
    return AnytimeFlops(entries / B, grid / B, grans, one_pass)


def _image_size(image_size: Any, c: Mapping[str, Any]) -> tuple[int, int]:
    if image_size is None:
        return c["img_size"], c["img_size"]
    size = (image_size, image_size) if is_int(image_size) else tuple(image_size)
    P = c["patch_size"]
    if len(size) != 2 or not all(is_int(s) and s >= P and s % P == 0 for s in size):
        raise ValueError(f"image_size must be an int or (H, W) of positive multiples of "
                         f"patch_size {P}, got {image_size!r}")
    return int(size[0]), int(size[1])
