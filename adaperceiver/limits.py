"""Memory limit of one forward pass of the PyTorch model (LIM-3).

Attention runs through ``scaled_dot_product_attention`` without a materialised mask, so
memory is linear in the tokens. The peak is estimated as

    bytes = s B (4 (N + M) max(D, F, C, E) + M C_in P^2)

(four live activation copies of the N latents and M patches at the widest layer,
plus the patch matrix), with s the bytes per value (8 for float64 inputs, else 4),
B images, N latents, M patches, D embed_dim, F = int(D * ffn_ratio), C classes,
E output_feat_dim, C_in channels and P the patch size. A call whose estimate exceeds
the memory of the input's device is refused with a ``ValueError`` naming the arguments
and the estimate; every smaller call runs (its time grows as B H N^2 per block).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

GIB = 2**30


def device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (physical memory for the CPU), or None if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type != "cpu":
        return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def estimate_bytes(config: Mapping[str, Any], shape: tuple[int, ...], num_tokens: int,
                   itemsize: int) -> int:
    """The module formula for x of ``shape`` (B, C_in, H, W) and N = ``num_tokens``."""
    B, C_in, H, W = shape
    P, D = config["patch_size"], config["embed_dim"]
    M = (H // P) * (W // P)
    widest = max(D, int(D * config["ffn_ratio"]), config["num_classes"],
                 config.get("output_feat_dim", 0))
    return itemsize * B * (4 * (num_tokens + M) * widest + M * C_in * P * P)


def check_memory(config: Mapping[str, Any], x: torch.Tensor, num_tokens: int,
                 available: int | None = None) -> None:
    """LIM-3: ``ValueError`` when the estimate exceeds ``available`` (default: the memory of
    x's device). Not checked while compiling (the device query is not traceable)."""
    if torch.compiler.is_compiling():
        return
    available = device_memory(x.device) if available is None else available
    itemsize = 8 if x.dtype == torch.float64 else 4
    need = estimate_bytes(config, tuple(x.shape), num_tokens, itemsize)
    if available is not None and need > available:
        raise ValueError(
            f"x of shape {tuple(x.shape)} with num_tokens={num_tokens} needs an estimated "
            f"{need / GIB:.3g} GiB, more than the {available / GIB:.3g} GiB of memory of "
            f"{x.device.type}; pass fewer or smaller images or fewer tokens")
