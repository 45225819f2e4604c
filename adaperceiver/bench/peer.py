"""The benchmark's peer: AdaPerceiver written the usual timm-ViT way, as a speed yardstick.

Written from scratch in the style of timm's ViT modules, the way the official code's
fastest CPU path ("full" attention layer) works: separate q/k/v ``nn.Linear``,
unmasked ``F.scaled_dot_product_attention`` (it ignores the block mask, so it does
*less* attention work than the spec asks), RoPE applied the straightforward real way
(``x * cos + rotate_pairs(x) * sin`` on (N, hd) tables), LayerScale as ``x * gamma``,
the FFN at full size sliced to the Matryoshka width with views, every latent row
projected as its own query and the write attending projected keys and values.

Its parameters have the names of the model's, so ``load_state_dict(model.state_dict())``
gives it the same weights. It agrees with the model when the model's mask is "full"
(tests/torch/test_bench_peer.py); it is not part of the public API.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import LN_EPS
from ..rope import rope_tables


def _norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


def rotate_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...) over the last dim."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).reshape(x.shape)


class PeerAttention(nn.Module):
    """timm-style attention with separate q, k, v and proj linears; kv = x for self-attention."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: Tensor, kv: Tensor, rope_q: tuple[Tensor, Tensor] | None,
                rope_k: tuple[Tensor, Tensor] | None) -> Tensor:
        B, N, D = x.shape
        M, H = kv.shape[1], self.num_heads
        q = self.q(x).reshape(B, N, H, D // H).transpose(1, 2)  # (B, H, N, hd)
        k = self.k(kv).reshape(B, M, H, D // H).transpose(1, 2)  # (B, H, M, hd)
        v = self.v(kv).reshape(B, M, H, D // H).transpose(1, 2)  # (B, H, M, hd)
        if rope_q is not None:
            q = q * rope_q[0] + rotate_pairs(q) * rope_q[1]
        if rope_k is not None:
            k = k * rope_k[0] + rotate_pairs(k) * rope_k[1]
        x = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, hd)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))  # (B, H, N, hd) -> (B, N, D)


class PeerMlp(nn.Module):
    """fc2(GELU(fc1(x))) at width h: fc1 rows [:h], fc2 columns [:h] as views."""

    def __init__(self, dim: int, hidden: int, out: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x: Tensor, h: int | None = None) -> Tensor:
        h = self.fc1.out_features if h is None else h
        x = F.gelu(F.linear(x, self.fc1.weight[:h], self.fc1.bias[:h]))
        return F.linear(x, self.fc2.weight[:, :h], self.fc2.bias)


class PeerLayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class PeerBlock(nn.Module):
    """x + ls1(attn(norm1 x)); x + ls2(ffn(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, hidden: int, c: dict[str, Any]):
        super().__init__()
        self.norm1 = _norm(dim)
        self.attn = PeerAttention(dim, num_heads, c["qkv_bias"], c["proj_bias"])
        self.ls1 = PeerLayerScale(dim) if c["ls_init_values"] else nn.Identity()
        self.norm2 = _norm(dim)
        self.ffn = PeerMlp(dim, hidden, dim)
        self.ls2 = PeerLayerScale(dim) if c["ls_init_values"] else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], h: int | None) -> Tensor:
        y = self.norm1(x)
        x = x + self.ls1(self.attn(y, y, rope, rope))
        return x + self.ls2(self.ffn(self.norm2(x), h))


class PeerCross(nn.Module):
    """sink + attn(q = snk_norm(sink), k/v = src_norm(src)), with the model's parameter names."""

    def __init__(self, dim: int, num_heads: int, c: dict[str, Any]):
        super().__init__()
        self.src_norm = _norm(dim)
        self.snk_norm = _norm(dim)
        self.cattn = PeerAttention(dim, num_heads, c["qkv_bias"], c["proj_bias"])

    def forward(self, sink: Tensor, src: Tensor, rope_q, rope_k) -> Tensor:
        return sink + self.cattn(self.snk_norm(sink), self.src_norm(src), rope_q, rope_k)


class _Token(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(*shape))


class _PatchEmbed(nn.Module):
    def __init__(self, c: dict[str, Any], hidden: int):
        super().__init__()
        D, P = c["embed_dim"], c["patch_size"]
        self.embed = nn.Module()
        self.embed.proj = nn.Conv2d(c["in_channels"], D, P, stride=P)
        self.pos_embed = nn.Parameter(torch.zeros(1, (c["img_size"] // P) ** 2, D))
        if c["use_embed_ffn"]:
            self.norm = _norm(D)
            self.ffn = PeerMlp(D, hidden, D)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, M, D)
        return self.ffn(self.norm(x)) if hasattr(self, "ffn") else x


class _Head(nn.Module):
    def __init__(self, c: dict[str, Any], hidden: int):
        super().__init__()
        D = c["embed_dim"]
        if c["use_output_ffn"]:
            self.norm = _norm(D)
            self.ffn = PeerMlp(D, hidden, c["num_classes"])
        else:
            self.ffn = nn.Linear(D, c["num_classes"])

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn(self.norm(x)) if hasattr(self, "norm") else self.ffn(x)


class PeerAdaPerceiver(nn.Module):
    """The classification model, written plainly; ``forward(x, num_tokens, mat_dim, depth)``
    returns logits (B, 1, C). Build it with ``PeerAdaPerceiver(model.config)``."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        c = self.config = dict(config)
        D, H = c["embed_dim"], c["num_heads"]
        hidden = int(D * c["ffn_ratio"])
        self.patch_embed = _PatchEmbed(c, hidden)
        self.process_latents = _Token(D)
        self.output_latents = _Token(1, D)
        self.read_head = PeerCross(D, H, c)
        self.write_head = PeerCross(D, H, c)
        self.blocks = nn.ModuleList(PeerBlock(D, H, hidden, c) for _ in range(c["depth"]))
        self.output_adapter = _Head(c, hidden)

    def rope(self, num_tokens: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos, sin as (N, hd) tables, each angle repeated for its channel pair."""
        c = self.config
        cos, sin = rope_tables(num_tokens, c["embed_dim"] // c["num_heads"], c["rope_theta"],
                               c["max_latent_tokens"], torch.device("cpu"))
        return cos.repeat_interleave(2, -1).to(dtype), sin.repeat_interleave(2, -1).to(dtype)

    def forward(self, x: Tensor, num_tokens: int, mat_dim: int, depth: int) -> Tensor:
        c = self.config
        B, N, D = x.shape[0], num_tokens, c["embed_dim"]
        h = int(mat_dim * c["ffn_ratio"])
        rope = self.rope(N, x.dtype)
        patches = self.patch_embed(x)
        latents = self.read_head(self.process_latents.token.expand(B, N, D), patches, rope, None)
        for block in self.blocks[:depth]:
            latents = block(latents, rope, h)
        out = self.write_head(self.output_latents.token.expand(B, 1, D), latents, None, rope)
        return self.output_adapter(out)
