"""ClassificationAdaPerceiver and DistillAdaPerceiver (spec semantics.md).

Reading order: ``forward`` -> ``_start`` (patches, RoPE tables, ``_read``) ->
``_run_blocks`` (fixed depth) or ``_run_with_exit`` (confidence exit) -> ``_write``
-> ``output_adapter``; the distill model adds ``_write_features``.

Shapes: B images, M patches, N latents, D embed_dim, H heads, hd = D / H,
F = int(D * ffn_ratio) FFN hidden units, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .anytime import AnytimeOutput, anytime
from .arguments import CallArgs, parse_call
from .config import CLASSIFICATION_DEFAULTS, DISTILL_DEFAULTS, resolve_config
from .hub import CheckpointMixin
from .layers import (
    Block,
    CrossAttentionFusion,
    Linear,
    Mlp,
    TokenQuery,
    WidthGroups,
    layer_norm,
    linear,
)
from .masks import AttentionPlan, attention_plan
from .rope import apply_rope, rope_dtype, rope_tables

Rope = tuple[Tensor, Tensor]


@dataclass
class AdaPerceiverOutput:
    """logits (B, 1, C); exit_depths (B,) int64, blocks run per sample; features
    (B, M, output_feat_dim) for the distill model, else None; stages when requested:
    "patches", "read", "block_0".., "write" (docs/architecture.md)."""

    logits: Tensor
    exit_depths: Tensor
    features: Tensor | None = None
    stages: dict[str, Tensor] | None = None


class PatchProjection(nn.Module):
    """Stride-P convolution as a matmul over flattened patches (PATCH-1)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, M, D), tokens row-major over the (H/P, W/P) grid."""
        B, C, H, W = x.shape
        P = self.patch_size
        patches = x.reshape(B, C, H // P, P, W // P, P)  # (B, C, gh, P, gw, P)
        patches = patches.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, P, P)
        patches = patches.reshape(B, -1, C * P * P)  # (B, M, C*P*P)
        weight = self.proj.weight.flatten(1)  # (D, C, P, P) -> (D, C*P*P)
        return linear(patches, weight, self.proj.bias)


class PatchEmbed(nn.Module):
    """patches = conv(x) + pos_embed; then MLP(LayerNorm(.)) when use_embed_ffn (PATCH-1..3)."""

    def __init__(self, img_size: int, patch_size: int, in_channels: int, dim: int,
                 ffn_hidden: int | None):
        super().__init__()
        self.grid = img_size // patch_size
        self.embed = PatchProjection(in_channels, dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        if ffn_hidden is not None:
            self.norm = layer_norm(dim)
            self.ffn = Mlp(dim, ffn_hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        P = self.embed.patch_size
        tokens = self.embed(x) + self.position_embedding(x.shape[-2] // P, x.shape[-1] // P)
        if hasattr(self, "ffn"):
            tokens = self.ffn(self.norm(tokens))  # full width, no residual (PATCH-3)
        return tokens

    def position_embedding(self, gh: int, gw: int) -> Tensor:
        """pos_embed for a (gh, gw) grid (PATCH-2): as is for the trained square grid, else
        antialiased bicubic resampling (align_corners=False), in float32 (float64 stays)."""
        pos = self.pos_embed
        if (gh, gw) == (self.grid, self.grid):
            return pos
        D = pos.shape[-1]
        square = pos.reshape(1, self.grid, self.grid, D).permute(0, 3, 1, 2)  # (1, D, s, s)
        resized = F.interpolate(square.to(rope_dtype(pos.dtype)), size=(gh, gw), mode="bicubic",
                                antialias=True, align_corners=False)  # (1, D, gh, gw)
        return resized.permute(0, 2, 3, 1).reshape(1, gh * gw, D).to(pos.dtype)  # (1, M, D)


class ProcessLatents(nn.Module):
    """The learned latent token (D,), broadcast to (B, N, D) (LAT-1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(dim))


class OutputLatents(nn.Module):
    """The learned output token (1, D), broadcast to (B, 1, D) (LAT-2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, dim))


class PatchOutputLatents(nn.Module):
    """Feature queries: a D -> D linear applied to every patch token (DIST-1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = Linear(dim, dim)

    def forward(self, patches: Tensor) -> Tensor:
        return self.proj(patches)


class OutputAdapter(nn.Module):
    """Linear D -> out, or MLP(LayerNorm(.)) D -> F -> out when ``ffn_hidden`` (HEAD-1, DIST-3)."""

    def __init__(self, dim: int, out_features: int, ffn_hidden: int | None):
        super().__init__()
        if ffn_hidden is None:
            self.ffn = Linear(dim, out_features)
        else:
            self.norm = layer_norm(dim)
            self.ffn = Mlp(dim, ffn_hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn(self.norm(x)) if hasattr(self, "norm") else self.ffn(x)


class _AdaPerceiver(nn.Module):
    """The shared trunk: patch embedding, read, processing blocks, write and logits head."""

    _defaults: dict[str, Any]

    def __init__(self, **config: Any):
        super().__init__()
        self.config = resolve_config(self._defaults, config)
        c = self.config
        D, H = c["embed_dim"], c["num_heads"]
        self.hidden = int(D * c["ffn_ratio"])  # F (MAT-4)
        self.process_latents = ProcessLatents(D)
        self.blocks = nn.ModuleList(
            Block(D, H, self.hidden, c["qkv_bias"], c["proj_bias"], bool(c["ls_init_values"]))
            for _ in range(c["depth"]))
        self.patch_embed = PatchEmbed(c["img_size"], c["patch_size"], c["in_channels"], D,
                                      self.hidden if c["use_embed_ffn"] else None)
        self.output_latents = OutputLatents(D)
        self.output_adapter = OutputAdapter(D, c["num_classes"],
                                            self.hidden if c["use_output_ffn"] else None)
        self.read_head = CrossAttentionFusion(D, H, c["qkv_bias"], c["proj_bias"])
        self.write_head = CrossAttentionFusion(D, H, c["qkv_bias"], c["proj_bias"])

    def init_weights(self, seed: int = 0, std: float = 0.02) -> None:
        """Random initialisation: weights and tokens from N(0, std^2) truncated at +-2 std,
        zero biases, unit norms, LayerScale gamma = ls_init_values; checkpoints overwrite
        it. On the meta device (``from_pretrained`` builds there) there are no values."""
        if self.process_latents.token.is_meta:
            return
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("gamma"):
                    p.fill_(self.config["ls_init_values"])
                elif "norm" in name.rsplit(".", 2)[-2] and name.endswith("weight"):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=generator).clamp_(-2, 2) * std)

    # --- trunk -------------------------------------------------------------------------

    def _start(self, x: Tensor, call: CallArgs, return_stages: bool):
        """Patches (B, M, D), latents after the read (B, N, D), RoPE tables and the stages."""
        x = x.to(self.patch_embed.pos_embed.dtype)
        patches = self.patch_embed(x)
        rope = self._rope(call.num_tokens, x.device, x.dtype)
        latents = self._read(patches, rope)
        stages = {"patches": patches, "read": latents} if return_stages else None
        return patches, latents, rope, stages

    def _rope(self, num_tokens: int, device: torch.device, dtype: torch.dtype) -> Rope:
        """cos, sin (N, hd/2) for positions 0..N-1 in ``rope_dtype(dtype)`` (ROPE-1..3)."""
        c = self.config
        cos, sin = rope_tables(num_tokens, c["embed_dim"] // c["num_heads"], c["rope_theta"],
                               c["max_latent_tokens"], device)
        return cos.to(rope_dtype(dtype)), sin.to(rope_dtype(dtype))

    def _read(self, patches: Tensor, rope: Rope) -> Tensor:
        """latents = token + CrossAttn(q = latents with RoPE, k/v = patches) (READ-1).

        The N latent rows are one learned token (LAT-1), so the query is projected once
        and differs per row only through RoPE.
        """
        token = self.process_latents.token  # (D,)
        q = self.read_head.queries(token.reshape(1, 1, -1))  # (1, H, 1, hd)
        q = apply_rope(q.expand(-1, -1, rope[0].shape[0], -1), *rope)  # (1, H, N, hd)
        return token + self.read_head.attend(q, patches, None)  # (B, N, D)

    def _plan(self, call: CallArgs) -> AttentionPlan:
        c = self.config
        return attention_plan(c["attn_layer"], c["block_mask"], call.num_tokens, call.token_grans)

    def _write_query(self, rope: Rope) -> TokenQuery:
        """The write query: the output token (LAT-2) projected without RoPE, folded into the
        key projection with RoPE on k (WRITE-1); the same for every image and block."""
        q = self.write_head.queries(self.output_latents.token.unsqueeze(0))  # (1, H, 1, hd)
        return self.write_head.fold_token_query(q, rope)

    def _write(self, latents: Tensor, query: TokenQuery) -> Tensor:
        """Output token (B, 1, D) (WRITE-1): token + CrossAttn(q = token, k/v = all N latents)."""
        return self.output_latents.token + self.write_head.attend_token(query, latents)

    def _run_blocks(self, latents: Tensor, rope: Rope, plan: AttentionPlan, call: CallArgs,
                    stages: dict[str, Tensor] | None) -> Tensor:
        """Blocks 0..depth-1 (DEPTH-1), with each row's FFN width (MAT-1..3)."""
        widths = WidthGroups(call.hidden)
        for d, block in enumerate(self.blocks[: call.depth]):
            latents = block(latents, rope, plan, widths)
            if stages is not None:
                stages[f"block_{d}"] = latents
        return latents

    def anytime(self, x: Tensor, num_tokens: int | None = None,
                mat_dim: int | list[int] | None = None,
                token_grans: list[int] | None = None) -> AnytimeOutput:
        """Every (depth x granularity) prediction of one call (ANY-1..6): logits (B, K, G, C),
        entry [b, l, j] = forward(x, num_tokens=G[j], depth=l+1, ...).logits[b, 0]; for the
        distill model logits only (ANY-2). Differentiable; see ``adaperceiver.anytime``."""
        return anytime(self, x, num_tokens=num_tokens, mat_dim=mat_dim, token_grans=token_grans)


class ClassificationAdaPerceiver(
    _AdaPerceiver,
    CheckpointMixin,
    repo_url="https://github.com/pjjajal/adaperceiver-public",
    paper_url="https://arxiv.org/abs/2511.18105",
):
    """AdaPerceiver image classifier (``pjajal/adaperceiver-v1-in1k-ft``).

    Constructor keywords are exactly the config.json keys (``config.CLASSIFICATION_DEFAULTS``);
    embed_dim, num_heads, depth, mask_token_grans and mat_dims are required.
    """

    _defaults = CLASSIFICATION_DEFAULTS

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.init_weights()

    def forward(self, x: Tensor, num_tokens: int | None = None,
                mat_dim: int | list[int] | None = None, depth: int | None = None,
                depth_tau: float | None = None, token_grans: list[int] | None = None,
                exit_policy: str = "batch_mean", return_stages: bool = False) -> AdaPerceiverOutput:
        """Logits (B, 1, C) at the requested budget (OUT-1); see the module docstring."""
        call = parse_call(self.config, x, num_tokens=num_tokens, mat_dim=mat_dim, depth=depth,
                          depth_tau=depth_tau, token_grans=token_grans, exit_policy=exit_policy)
        _, latents, rope, stages = self._start(x, call, return_stages)
        plan = self._plan(call)
        if call.depth_tau is not None:
            out, exit_depths = self._run_with_exit(latents, rope, plan, call, stages)
        else:
            latents = self._run_blocks(latents, rope, plan, call, stages)
            out = self._write(latents, self._write_query(rope))
            exit_depths = torch.full((x.shape[0],), call.depth, dtype=torch.int64,
                                     device=x.device)
        if stages is not None:
            stages["write"] = out
        return AdaPerceiverOutput(self.output_adapter(out), exit_depths, None, stages)

    def _run_with_exit(self, latents: Tensor, rope: Rope, plan: AttentionPlan, call: CallArgs,
                       stages: dict[str, Tensor] | None) -> tuple[Tensor, Tensor]:
        """Confidence early exit (EXIT-1..4): after each block d compute the max softmax
        probability of head(write(latents)) per sample. batch_mean stops everyone at the
        first d whose batch mean >= tau; per_sample retires each sample at its own first
        such d, and retired rows leave the batch (no more compute is spent on them).
        Returns (output token (B, 1, D) at each sample's exit depth, exit depths (B,))."""
        B = latents.shape[0]
        tau, per_sample = call.depth_tau, call.exit_policy == "per_sample"
        active = torch.arange(B, device=latents.device)  # batch rows still running
        widths = WidthGroups(call.hidden)
        query = self._write_query(rope)
        frozen = latents  # full-batch latents, for the stages
        out_final: Tensor | None = None
        exit_depths = torch.full((B,), call.depth, dtype=torch.int64, device=latents.device)
        for d, block in enumerate(self.blocks[: call.depth], start=1):
            latents = block(latents, rope, plan, widths)
            if stages is not None:
                frozen = frozen.index_copy(0, active, latents) if per_sample else latents
                stages[f"block_{d - 1}"] = frozen
            out = self._write(latents, query)  # (B_active, 1, D)
            conf = self.output_adapter(out).softmax(-1).amax(-1)[:, 0].double()  # (B_active,)
            if d == call.depth:
                stop = torch.ones_like(conf, dtype=torch.bool)
            elif per_sample:
                stop = conf >= tau
            else:
                stop = torch.full_like(conf, bool(conf.mean() >= tau), dtype=torch.bool)
            if out_final is None:
                out_final = out.new_empty((B, *out.shape[1:]))
            done = stop.nonzero()[:, 0]
            if done.numel():
                rows = active.index_select(0, done)
                out_final.index_copy_(0, rows, out.index_select(0, done))
                exit_depths.index_fill_(0, rows, d)
                if done.numel() == active.numel():
                    break
                keep = (~stop).nonzero()[:, 0]
                active = active.index_select(0, keep)
                latents = latents.index_select(0, keep)
                widths = widths.rows(keep.tolist())
        return out_final, exit_depths


class DistillAdaPerceiver(
    _AdaPerceiver,
    CheckpointMixin,
    repo_url="https://github.com/pjjajal/adaperceiver-public",
    paper_url="https://arxiv.org/abs/2511.18105",
):
    """AdaPerceiver distilled backbone (``pjajal/adaperceiver-v1``): logits and patch features.

    Constructor keywords are exactly the config.json keys (``config.DISTILL_DEFAULTS``).
    """

    _defaults = DISTILL_DEFAULTS

    def __init__(self, **config: Any):
        super().__init__(**config)
        D, H, c = self.config["embed_dim"], self.config["num_heads"], self.config
        self.output_latents_feat = PatchOutputLatents(D)
        self.output_adapter_feat = OutputAdapter(D, c["output_feat_dim"], self.hidden)
        self.write_head_feat = CrossAttentionFusion(D, H, c["qkv_bias"], c["proj_bias"])
        self.init_weights()

    def forward(self, x: Tensor, num_tokens: int | None = None,
                mat_dim: int | list[int] | None = None, depth: int | None = None,
                token_grans: list[int] | None = None,
                return_stages: bool = False) -> AdaPerceiverOutput:
        """Logits (B, 1, C) and features (B, M, output_feat_dim) (OUT-1, DIST-1..3)."""
        call = parse_call(self.config, x, num_tokens=num_tokens, mat_dim=mat_dim, depth=depth,
                          token_grans=token_grans)
        patches, latents, rope, stages = self._start(x, call, return_stages)
        latents = self._run_blocks(latents, rope, self._plan(call), call, stages)
        out = self._write(latents, self._write_query(rope))
        if stages is not None:
            stages["write"] = out
        exit_depths = torch.full((x.shape[0],), call.depth, dtype=torch.int64, device=x.device)
        features = self._write_features(patches, latents, rope)
        return AdaPerceiverOutput(self.output_adapter(out), exit_depths, features, stages)

    def _write_features(self, patches: Tensor, latents: Tensor, rope: Rope) -> Tensor:
        """queries = output_latents_feat(patches) (B, M, D); queries + CrossAttn(q without
        RoPE, k/v = latents with RoPE on k); then LayerNorm + MLP (DIST-1..3)."""
        queries = self.output_latents_feat(patches)
        q = self.write_head_feat.queries(queries)  # (B, H, M, hd)
        features = queries + self.write_head_feat.attend(q, latents, rope)
        return self.output_adapter_feat(features)
