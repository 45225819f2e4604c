"""The anytime grid (spec anytime.md, ANY-1..4), in float64 NumPy, written for reading.

``anytime`` returns ``logits[b, l, j]`` = the logits that ``classify(num_tokens=G[j],
depth=l+1, mat_dim=..., token_grans=...)`` gives sample b, for every depth l+1 = 1..K
and every granularity G[j] of G(N) (MASK-2). When the prefix property holds (ANY-3)
that is one pass of N latents with a write-out on each prefix after each block;
otherwise (ANY-4) one pass per granularity with a write-out after each block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .arguments import CallArgs, validate_call
from .config import validate_config
from .masks import granularities
from .model import embed_patches, output_head, read, run_blocks, write
from .rope import rope_angles

Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class AnytimeGrid:
    """logits (B, K, G, C): [b, l, j] = sample b at depth l+1 with G[j] latents (ANY-1);
    depths (1, ..., K); granularities G; one_pass: computed from one pass (ANY-3) or one
    pass per granularity (ANY-4)."""

    logits: np.ndarray
    depths: tuple[int, ...]
    granularities: tuple[int, ...]
    one_pass: bool


def prefix_property_holds(config: Mapping[str, Any], num_tokens: int) -> bool:
    """ANY-3 (MASK-6): flex attention with the block or causal mask, and N <= L."""
    return (config["attn_layer"] == "flex" and config["block_mask"] in ("block", "causal")
            and num_tokens <= config["max_latent_tokens"])


def latents_after_each_block(weights: Weights, config: Mapping[str, Any],
                             call: CallArgs) -> tuple[list[np.ndarray], np.ndarray]:
    """One pass with call.num_tokens latents through all K blocks: the latents after each
    block, [z^(1), ..., z^(K)] each (B, N, D), and the RoPE angles (N, hd/2)."""
    head_dim = config["embed_dim"] // config["num_heads"]
    angles = rope_angles(call.num_tokens, head_dim, config["rope_theta"],
                         config["max_latent_tokens"])
    patches = embed_patches(weights, config, call.images)
    latents = read(weights, config, patches, call.num_tokens, angles)
    _, _, stages = run_blocks(weights, config, call, latents, angles)
    return [stages[f"block_{d}"] for d in range(config["depth"])], angles


def write_out(weights: Weights, config: Mapping[str, Any], latents: np.ndarray,
              angles: np.ndarray) -> np.ndarray:
    """Logits (B, C) of the write (WRITE-1) and head (HEAD-1) on these latents."""
    return output_head(weights, config, write(weights, config, latents, angles))[:, 0]


def anytime(
    weights: Weights,
    config: Mapping[str, Any],
    images: np.ndarray,
    *,
    num_tokens: int | None = None,
    mat_dim: int | list[int] | None = None,
    token_grans: list[int] | None = None,
) -> AnytimeGrid:
    """Every (depth x granularity) logit of one call (ANY-1..4); logits only for the
    distill model (ANY-2). Arguments are checked as for ``trace`` (ARG-1, 2, 5, 7, 8)."""
    config = validate_config(config)
    weights, call = validate_call(config, weights, images, num_tokens=num_tokens,
                                  mat_dim=mat_dim, depth=None, depth_tau=None,
                                  token_grans=token_grans, exit_policy="batch_mean")
    grans = tuple(granularities(call.token_grans, call.num_tokens))
    K = config["depth"]
    one_pass = prefix_property_holds(config, call.num_tokens)
    columns = []  # one (B, K, C) column per granularity
    if one_pass:  # ANY-3: the first g latents of the N-latent pass are the g-latent run
        depths, angles = latents_after_each_block(weights, config, call)
        for g in grans:
            columns.append(np.stack([write_out(weights, config, z[:, :g], angles[:g])
                                     for z in depths], axis=1))
    else:  # ANY-4: a pass of its own for each granularity
        for g in grans:
            depths, angles = latents_after_each_block(weights, config,
                                                      replace(call, num_tokens=g))
            columns.append(np.stack([write_out(weights, config, z, angles) for z in depths],
                                    axis=1))
    logits = np.stack(columns, axis=2)  # G x (B, K, C) -> (B, K, G, C)
    return AnytimeGrid(logits, tuple(range(1, K + 1)), grans, one_pass)
