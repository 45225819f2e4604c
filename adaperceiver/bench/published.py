"""The published size the benchmarks build (embed 832, 13 heads, 21 blocks, N up to 256,
widths 416/624/832, 224 px, patch 16) and the random non-trivial weights they load."""

from __future__ import annotations

import math

import torch

PUBLISHED = dict(embed_dim=832, num_heads=13, depth=21, max_latent_tokens=256, ffn_ratio=2.57,
                 mask_token_grans=[32, 64, 96, 128, 192, 256], mat_dims=[416, 624, 832],
                 img_size=224, patch_size=16, num_classes=1000, use_embed_ffn=True)
CONFIGS = [(256, 832, 21), (256, 416, 21), (64, 832, 21)]  # (N, width, depth)
WIDTHS = (416, 624, 832)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights (as the oracle's random_weights): linear weights z / sqrt(fan_in),
    biases 0.2 z, norms 1 + 0.2 z, LayerScale uniform [0.3, 1), tokens and pos_embed z."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g)
            if name.endswith("gamma"):
                p.copy_(0.3 + 0.7 * torch.rand(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * z)
            elif "norm" in name:
                p.copy_(1 + 0.2 * z)
            elif p.ndim >= 2 and "pos_embed" not in name and "token" not in name:
                p.copy_(z / math.sqrt(p[0].numel()))
            else:
                p.copy_(z)


def published_model(seed: int = 0) -> torch.nn.Module:
    """``ClassificationAdaPerceiver`` at the published size, ``randomize``d, in eval mode."""
    from ..model import ClassificationAdaPerceiver

    model = ClassificationAdaPerceiver(**PUBLISHED).eval()
    randomize(model, seed)
    return model
