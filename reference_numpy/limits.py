"""Memory limit of one oracle forward pass (LIM-3).

The oracle materialises every attention matrix in float64. Its peak memory is about

    bytes = 8 B (3 H N max(N, M) + (N + M) max(D, F, C, E)) + N^2

(three live copies of the (B, H, N, N) block scores or the (B, H, N, M) read scores,
the token activations and FFN hidden units of latents and patches, and the (N, N)
boolean token mask), with B images, M patches, N latents, H heads, D embed_dim,
F = int(D * ffn_ratio), C classes and E output_feat_dim. A call whose estimate exceeds
the machine's physical memory is refused with a ``ValueError`` naming the arguments
and the estimate, before anything is allocated; every smaller call runs, however long
it takes (the cost grows as B H N^2 per block).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

GIB = 2**30


def machine_memory() -> int | None:
    """Physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def estimate_bytes(config: Mapping[str, Any], shape: tuple[int, ...], num_tokens: int) -> int:
    """The module formula for images of ``shape`` (B, C_in, H_img, W_img) and N = ``num_tokens``."""
    B, _, H, W = shape
    P = config["patch_size"]
    M = (H // P) * (W // P)
    N = num_tokens
    width = max(config["embed_dim"], int(config["embed_dim"] * config["ffn_ratio"]),
                config["num_classes"], config.get("output_feat_dim", 0))
    return 8 * B * (3 * config["num_heads"] * N * max(N, M) + (N + M) * width) + N * N


def check_memory(config: Mapping[str, Any], shape: tuple[int, ...], num_tokens: int,
                 available: int | None = None) -> None:
    """LIM-3: ``ValueError`` when the estimate exceeds ``available`` (default: the machine's
    physical memory)."""
    available = machine_memory() if available is None else available
    need = estimate_bytes(config, shape, num_tokens)
    if available is not None and need > available:
        raise ValueError(
            f"images of shape {tuple(shape)} with num_tokens={num_tokens} need an estimated "
            f"{need / GIB:.3g} GiB in the float64 oracle, more than the {available / GIB:.3g} "
            "GiB of memory of this machine; pass fewer or smaller images or fewer tokens")
