"""The AdaPerceiver forward pass, stateless, in float64 NumPy.

Reading order: ``trace`` (the whole pass) calls ``embed_patches`` -> ``read`` ->
``block`` (x depth, with optional confidence exit) -> ``write`` -> ``output_head``,
and for the distill model ``write_features``. Parameters are looked up by their
state-dict keys (spec CKPT-3), so a reader can map every line to the checkpoint.

Shapes (spec/semantics.md#notation): B images, C_in channels, P patch size, M patches,
N latents, D embed_dim, H heads, hd = D / H, F = int(D * ffn_ratio) FFN hidden units,
C classes, E output_feat_dim, K blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arguments import CallArgs, validate_call
from .config import validate_config
from .masks import token_mask
from .ops import (
    layer_norm,
    linear,
    mlp,
    multi_head_attention,
    patch_embed,
    resize_pos_embed,
    softmax,
)
from .rope import apply_rope, rope_angles

Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Trace:
    """Everything one forward pass produced.

    logits (B, 1, C); features (B, M, E) for the distill model, else None;
    exit_depths (B,) int64, the number of blocks each sample ran; stages: "patches",
    "read", "block_0" .. "block_{d-1}", "write" (see docs/architecture.md).
    """

    logits: np.ndarray
    features: np.ndarray | None
    exit_depths: np.ndarray
    stages: dict[str, np.ndarray]


def _linear(weights: Weights, name: str, x: np.ndarray) -> np.ndarray:
    """Linear ``name`` (NUM-3): x W^T + b with ``name.weight`` and ``name.bias``; the bias is
    absent when the config has none there (qkv_bias / proj_bias false)."""
    return linear(x, weights[f"{name}.weight"], weights.get(f"{name}.bias"))


def _norm(weights: Weights, name: str, x: np.ndarray) -> np.ndarray:
    """LayerNorm ``name`` (NUM-1) with ``name.weight`` and ``name.bias``."""
    return layer_norm(x, weights[f"{name}.weight"], weights[f"{name}.bias"])


def _mlp(weights: Weights, name: str, x: np.ndarray, hidden: int | None = None) -> np.ndarray:
    """``name.fc2(GELU(name.fc1(x)))`` keeping the first ``hidden`` hidden units (MAT-1):
    rows of fc1 and its bias, columns of fc2; fc2's bias is kept. None keeps all."""
    keep = slice(hidden)
    fc1 = (weights[f"{name}.fc1.weight"][keep], weights[f"{name}.fc1.bias"][keep])
    fc2 = (weights[f"{name}.fc2.weight"][:, keep], weights[f"{name}.fc2.bias"])
    return mlp(x, fc1, fc2)


def embed_patches(weights: Weights, config: Mapping[str, Any], images: np.ndarray) -> np.ndarray:
    """Patch tokens (B, M, D) (PATCH-1..3).

    patches = conv_P(images) + pos_embed (resized to the image's grid);
    with use_embed_ffn: patches = MLP(LayerNorm(patches)), no residual, full width.
    """
    P = config["patch_size"]
    grid = (images.shape[2] // P, images.shape[3] // P)
    patches = patch_embed(images, weights["patch_embed.embed.proj.weight"],
                          weights["patch_embed.embed.proj.bias"])
    patches = patches + resize_pos_embed(weights["patch_embed.pos_embed"][0], grid)
    if config["use_embed_ffn"]:
        patches = _mlp(weights, "patch_embed.ffn", _norm(weights, "patch_embed.norm", patches))
    return patches


def cross_attention(
    weights: Weights,
    name: str,
    num_heads: int,
    sink: np.ndarray,
    src: np.ndarray,
    *,
    angles_q: np.ndarray | None = None,
    angles_k: np.ndarray | None = None,
) -> np.ndarray:
    """Cross-attention fusion ``name`` (ATTN-2): sink (B, S, D) reads src (B, R, D).

    q = q(snk_norm(sink)), k = k(src_norm(src)), v = v(src_norm(src)); RoPE on q when
    angles_q is given and on k when angles_k is given, never on v;
    returns proj(MHA(q, k, v)), unmasked. The caller adds the residual.
    """
    sink = _norm(weights, f"{name}.snk_norm", sink)
    src = _norm(weights, f"{name}.src_norm", src)
    q = _linear(weights, f"{name}.cattn.q", sink)
    k = _linear(weights, f"{name}.cattn.k", src)
    v = _linear(weights, f"{name}.cattn.v", src)
    if angles_q is not None:
        q = apply_rope(q, angles_q, num_heads)
    if angles_k is not None:
        k = apply_rope(k, angles_k, num_heads)
    return _linear(weights, f"{name}.cattn.proj", multi_head_attention(q, k, v, num_heads))


def read(weights: Weights, config: Mapping[str, Any], patches: np.ndarray, num_tokens: int,
         angles: np.ndarray) -> np.ndarray:
    """Latents after the read (LAT-1, READ-1).

    latents = process_latents.token broadcast to (B, N, D) (all rows equal);
    latents = latents + CrossAttn_read(sink=latents with RoPE on q, src=patches without RoPE).
    """
    B, _, D = patches.shape
    latents = np.broadcast_to(weights["process_latents.token"], (B, num_tokens, D))
    return latents + cross_attention(weights, "read_head", config["num_heads"], latents, patches,
                                     angles_q=angles)


def block(
    weights: Weights,
    config: Mapping[str, Any],
    index: int,
    x: np.ndarray,
    angles: np.ndarray,
    mask: np.ndarray | None,
    hidden: np.ndarray,
) -> np.ndarray:
    """Processing block ``index`` (BLOCK-1..3, MAT-1..3), pre-norm:

    x = x + ls1 * proj(MHA(RoPE(q), RoPE(k), v; mask)) of norm1(x)
    x = x + ls2 * fc2(GELU(fc1(norm2(x)))) with the first hidden[b] FFN units for row b.
    LayerScale (ls1, ls2) is present only when config ls_init_values is truthy.
    """
    p = f"blocks.{index}"
    H = config["num_heads"]
    h = _norm(weights, f"{p}.norm1", x)
    q = apply_rope(_linear(weights, f"{p}.attn.q", h), angles, H)
    k = apply_rope(_linear(weights, f"{p}.attn.k", h), angles, H)
    v = _linear(weights, f"{p}.attn.v", h)
    attn = _linear(weights, f"{p}.attn.proj", multi_head_attention(q, k, v, H, mask))
    if config["ls_init_values"]:
        attn = attn * weights[f"{p}.ls1.gamma"]
    x = x + attn

    h = _norm(weights, f"{p}.norm2", x)
    ffn = np.empty_like(h)
    for width in np.unique(hidden):  # rows sharing a width share one slice (MAT-3)
        rows = hidden == width
        ffn[rows] = _mlp(weights, f"{p}.ffn", h[rows], int(width))
    if config["ls_init_values"]:
        ffn = ffn * weights[f"{p}.ls2.gamma"]
    return x + ffn


def write(weights: Weights, config: Mapping[str, Any], latents: np.ndarray,
          angles: np.ndarray) -> np.ndarray:
    """Output token (B, 1, D) (LAT-2, WRITE-1).

    out = output_latents.token broadcast to (B, 1, D);
    out = out + CrossAttn_write(sink=out without RoPE, src=all N latents with RoPE on k).
    """
    B, _, D = latents.shape
    out = np.broadcast_to(weights["output_latents.token"], (B, 1, D))
    return out + cross_attention(weights, "write_head", config["num_heads"], out, latents,
                                 angles_k=angles)


def output_head(weights: Weights, config: Mapping[str, Any], out: np.ndarray) -> np.ndarray:
    """Logits (B, 1, C) (HEAD-1, OUT-1): output_adapter.ffn(out), a linear D -> C;
    with use_output_ffn: MLP(LayerNorm(out)) D -> F -> C, full width."""
    if config["use_output_ffn"]:
        return _mlp(weights, "output_adapter.ffn", _norm(weights, "output_adapter.norm", out))
    return _linear(weights, "output_adapter.ffn", out)


def write_features(weights: Weights, config: Mapping[str, Any], patches: np.ndarray,
                   latents: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Distill features (B, M, E), E = output_feat_dim (DIST-1..3).

    queries = output_latents_feat.proj(patches) (one query per patch);
    queries = queries + CrossAttn_write_head_feat(sink=queries without RoPE,
                                                  src=latents with RoPE on k);
    features = MLP(LayerNorm(queries)) with output_adapter_feat, full width.
    """
    queries = _linear(weights, "output_latents_feat.proj", patches)
    queries = queries + cross_attention(weights, "write_head_feat", config["num_heads"], queries,
                                        latents, angles_k=angles)
    return _mlp(weights, "output_adapter_feat.ffn",
                _norm(weights, "output_adapter_feat.norm", queries))


def confidence(logits: np.ndarray) -> np.ndarray:
    """Per-sample confidence (B,) (EXIT-1): max over classes of softmax(logits (B, 1, C))."""
    return softmax(logits).max(axis=-1)[:, 0]


def ffn_hidden(config: Mapping[str, Any], widths: tuple[int, ...] | None, batch: int) -> np.ndarray:
    """Hidden units per row (B,) (MAT-1, MAT-4): h = int(m * ffn_ratio) in Python float
    arithmetic; no width means F = int(D * ffn_ratio)."""
    if widths is None:
        widths = (config["embed_dim"],) * batch
    return np.array([int(m * config["ffn_ratio"]) for m in widths], dtype=np.int64)


def run_blocks(weights: Weights, config: Mapping[str, Any], call: CallArgs, latents: np.ndarray,
               angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Blocks 0 .. depth-1 with optional confidence exit (DEPTH-1, EXIT-1..4).

    Fixed depth d: every sample runs d blocks. With depth_tau t, after each block d
    (1-based) the confidence of head(write(latents)) is computed; "batch_mean" stops
    everyone at the first d whose batch-mean confidence >= t, "per_sample" freezes
    each sample at its own first such d; otherwise samples stop after the last block.
    Returns (latents at each sample's exit depth, exit depths (B,) int64, block stages).
    """
    B = latents.shape[0]
    mask = token_mask(config["attn_layer"], config["block_mask"], call.num_tokens,
                      call.token_grans)
    hidden = ffn_hidden(config, call.widths, B)
    exit_depths = np.full(B, call.depth, dtype=np.int64)
    running = np.ones(B, dtype=bool)
    stages = {}
    for d in range(1, call.depth + 1):
        updated = block(weights, config, d - 1, latents, angles, mask, hidden)
        latents = np.where(running[:, None, None], updated, latents)  # exited rows stay frozen
        stages[f"block_{d - 1}"] = latents
        if call.depth_tau is None:
            continue
        conf = confidence(output_head(weights, config, write(weights, config, latents, angles)))
        if call.exit_policy == "batch_mean":
            stop = np.full(B, conf.mean() >= call.depth_tau)
        else:
            stop = conf >= call.depth_tau
        exiting = running & stop
        exit_depths[exiting] = d
        running &= ~exiting
        if not running.any():
            break
    return latents, exit_depths, stages


def trace(
    weights: Weights,
    config: Mapping[str, Any],
    images: np.ndarray,
    *,
    num_tokens: int | None = None,
    mat_dim: int | list[int] | None = None,
    depth: int | None = None,
    depth_tau: float | None = None,
    token_grans: list[int] | None = None,
    exit_policy: str = "batch_mean",
) -> Trace:
    """One full forward pass with every intermediate stage (spec semantics.md).

    patches -> read -> blocks (fixed depth or confidence exit) -> write -> head;
    the distill model (config has output_feat_dim) also writes patch features.
    RoPE angles use positions 0..N-1 with linear position interpolation above
    max_latent_tokens (ROPE-1..4).
    The result depends only on the arguments (STATE-1).
    """
    config = validate_config(config)
    weights, call = validate_call(config, weights, images, num_tokens=num_tokens, mat_dim=mat_dim,
                         depth=depth, depth_tau=depth_tau, token_grans=token_grans,
                         exit_policy=exit_policy)
    head_dim = config["embed_dim"] // config["num_heads"]
    angles = rope_angles(call.num_tokens, head_dim, config["rope_theta"],
                         config["max_latent_tokens"])

    patches = embed_patches(weights, config, call.images)
    latents = read(weights, config, patches, call.num_tokens, angles)
    stages = {"patches": patches, "read": latents}
    latents, exit_depths, block_stages = run_blocks(weights, config, call, latents, angles)
    stages.update(block_stages)
    out = write(weights, config, latents, angles)
    stages["write"] = out
    logits = output_head(weights, config, out)
    features = None
    if "output_feat_dim" in config:
        features = write_features(weights, config, patches, latents, angles)
    return Trace(logits=logits, features=features, exit_depths=exit_depths, stages=stages)


def classify(
    weights: Weights,
    config: Mapping[str, Any],
    images: np.ndarray,
    *,
    num_tokens: int | None = None,
    mat_dim: int | list[int] | None = None,
    depth: int | None = None,
    depth_tau: float | None = None,
    token_grans: list[int] | None = None,
    exit_policy: str = "batch_mean",
) -> np.ndarray:
    """Logits (B, 1, C) of ``trace`` with the same arguments (OUT-1)."""
    return trace(weights, config, images, num_tokens=num_tokens, mat_dim=mat_dim, depth=depth,
                 depth_tau=depth_tau, token_grans=token_grans, exit_policy=exit_policy).logits


def distill(
    weights: Weights,
    config: Mapping[str, Any],
    images: np.ndarray,
    *,
    num_tokens: int | None = None,
    mat_dim: int | list[int] | None = None,
    depth: int | None = None,
    token_grans: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (B, 1, C), features (B, M, E)) of the distill model (OUT-1, DIST-3).

    No confidence exit: depth_tau and exit_policy are not parameters.
    """
    if "output_feat_dim" not in config:
        raise ValueError("config must be a distill config (with output_feat_dim) for distill(); "
                         "use classify() for a classification config")
    result = trace(weights, config, images, num_tokens=num_tokens, mat_dim=mat_dim, depth=depth,
                   token_grans=token_grans)
    return result.logits, result.features
