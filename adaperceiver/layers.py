"""Building blocks: MLP with Matryoshka width, self-attention, cross-attention fusion, block.

Parameters keep the published checkpoint layout (``q``/``k``/``v``/``proj``,
``fc1``/``fc2``, ``norm1``, ``ls1.gamma`` ...) and the layers compute with them
directly: no derived copies (a fused q/k/v or padded fc1 measured no faster on CPU,
see docs/performance.md), so results always follow the current parameters,
however they were changed, from any number of threads (STATE-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .masks import AttentionPlan
from .rope import apply_rope

LN_EPS = 1e-6  # NUM-1: every LayerNorm (timm's) uses eps 1e-6


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b for x (..., in), W (out, in), b (out,) or None: every linear of the model.

    Float32 inference on the CPU runs oneDNN's GEMM (``mkldnn._linear_pointwise``) on
    the current weight, faster than MKL's sgemm (what ``F.linear`` calls) on the model's
    shapes on an AVX-512 CPU without AMX: 1.2-1.4x for the whole published-size forward
    at batch 8 (docs/performance.md). A non-contiguous weight
    (fc2's Matryoshka column slice) is copied for the call: oneDNN on a strided weight
    is orders of magnitude slower. Nothing is cached, so results follow the parameters
    (STATE-1). Everything else (autograd, autocast, tracing, export, a dispatch mode such
    as ``FlopCounterMode`` or fake tensors that reads aten ops, other dtypes and
    devices, empty products such as a zero FFN width, a torch without oneDNN) is
    ``F.linear``.
    """
    if _onednn_applies(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(), bias,
                                                  "none", [], "")
    return F.linear(x, weight, bias)


def _onednn_applies(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Is oneDNN's linear equivalent to ``F.linear`` here and invisible to tracers?"""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (x.numel() > 0 and weight.numel() > 0  # oneDNN rejects empty products
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and not torch.is_autocast_enabled("cpu")
            and not (torch.compiler.is_compiling() or torch.jit.is_tracing()
                     or torch.jit.is_scripting() or _get_current_dispatch_mode() is not None)
            and torch.backends.mkldnn.is_available())


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and keys) computed by ``linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm with affine weight and bias and eps 1e-6 (NUM-1)."""
    return nn.LayerNorm(dim, eps=LN_EPS)


class Mlp(nn.Module):
    """FFN = fc2(GELU(fc1(x))) (BLOCK-3, NUM-2 exact erf GELU) with Matryoshka width.

    ``forward(x, hidden=h)`` keeps the first h hidden units: rows [:h] of fc1 and its
    bias, columns [:h] of fc2; fc2's bias is kept (MAT-1). The weights are sliced as
    views, never masked or copied.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.hidden_features = hidden_features
        self.fc1 = Linear(in_features, hidden_features)
        self.fc2 = Linear(hidden_features, out_features)

    def forward(self, x: Tensor, hidden: int | None = None) -> Tensor:
        h = self.hidden_features if hidden is None else hidden
        a = linear(x, self.fc1.weight[:h], self.fc1.bias[:h])  # (..., h)
        a = gelu_(a) if may_overwrite(a) else F.gelu(a)
        return linear(a, self.fc2.weight[:, :h], self.fc2.bias)


def may_overwrite(t: Tensor) -> bool:
    """Can the fresh intermediate ``t`` be updated in place? Not when autograd records it
    (its old value may be needed for the backward pass) nor while tracing (functional graphs)."""
    return not (t.requires_grad or torch.compiler.is_compiling())


def gelu_(t: Tensor) -> Tensor:
    """Exact (erf) GELU in place (NUM-2); saves allocating a second (..., h) activation."""
    return torch._C._nn.gelu_(t)


class LayerScale(nn.Module):
    """x * gamma, gamma (D,) (BLOCK-2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def residual(x: Tensor, scale: nn.Module, y: Tensor) -> Tensor:
    """x + scale(y) (BLOCK-1, BLOCK-2): one fused multiply-add when ``scale`` is a LayerScale."""
    if isinstance(scale, LayerScale):
        return torch.addcmul(x, y, scale.gamma)
    return x + scale(y)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, D) -> (B, H, N, hd), heads split as reshape(B, N, H, hd) (ATTN-1)."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, N, hd) -> (B, N, D)."""
    return x.transpose(1, 2).flatten(2)


def attend(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan | None = None) -> Tensor:
    """softmax(q k^T / sqrt(hd)) v over the keys the plan allows (ATTN-1, MASK-3..5).

    q (B, H, Nq, hd), k and v (B, H, Nk, hd) -> (B, Nq, D), heads merged. Without a
    plan all keys are attended. A block plan runs one unmasked attention per span, the
    queries [q0, q1) against the key prefix [0, k1), each written into its rows of the
    output: masked keys take no work and get weight exactly 0, and no mask is built
    (measured faster than one call with an additive mask, docs/performance.md).
    """
    if plan is None or (len(plan.spans) == 1 and not plan.causal):
        return merge_heads(F.scaled_dot_product_attention(q, k, v))
    if plan.causal:
        return merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    B, H, N, hd = q.shape
    out = q.new_empty(B, N, H, hd)
    for q0, q1, k1 in plan.spans:
        rows = F.scaled_dot_product_attention(q[:, :, q0:q1], k[:, :, :k1], v[:, :, :k1])
        out[:, q0:q1] = rows.transpose(1, 2)  # (B, H, q1 - q0, hd) -> (B, q1 - q0, H, hd)
    return out.flatten(2)  # (B, N, H, hd) -> (B, N, D)


class Projections(nn.Module):
    """The q, k, v and output projections of one attention (ATTN-1 / NUM-3)."""

    def __init__(self, dim: int, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.k = Linear(dim, dim, bias=qkv_bias)
        self.v = Linear(dim, dim, bias=qkv_bias)
        self.proj = Linear(dim, dim, bias=proj_bias)

    def heads(self, x: Tensor, names: tuple[str, ...], num_heads: int) -> tuple[Tensor, ...]:
        """x (B, N, D) projected by each named linear and split into heads: a tuple of
        len(names) views (B, H, N, hd)."""
        return tuple(split_heads(getattr(self, name)(x), num_heads) for name in names)


class SelfAttention(Projections):
    """Multi-head self-attention of the latents with RoPE on q and k (BLOCK-1, ROPE-4)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool):
        super().__init__(dim, qkv_bias, proj_bias)
        self.num_heads = num_heads

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], plan: AttentionPlan) -> Tensor:
        q, k, v = self.heads(x, ("q", "k", "v"), self.num_heads)  # (B, H, N, hd) each
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.proj(attend(q, k, v, plan))


class CrossAttentionFusion(nn.Module):
    """sink + CrossAttn: q = q(snk_norm(sink)), k, v = k, v(src_norm(src)) (ATTN-2).

    The residual is added by the caller. ``queries`` and ``attend`` are separate
    so a batch-independent sink (a learned token) is projected once per call.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.src_norm = layer_norm(dim)
        self.snk_norm = layer_norm(dim)
        self.cattn = Projections(dim, qkv_bias, proj_bias)

    def queries(self, sink: Tensor) -> Tensor:
        """(B, Nq, D) -> (B, H, Nq, hd); RoPE, if any, is the caller's."""
        return split_heads(self.cattn.q(self.snk_norm(sink)), self.num_heads)

    def attend(self, q: Tensor, src: Tensor, rope_k: tuple[Tensor, Tensor] | None) -> Tensor:
        """q (B, H, Nq, hd) attends src (B, Nk, D), RoPE on k when given; -> (B, Nq, D)."""
        k, v = self.cattn.heads(self.src_norm(src), ("k", "v"), self.num_heads)  # (B, H, Nk, hd)
        if rope_k is not None:
            k = apply_rope(k, *rope_k)
        return self.cattn.proj(attend(q.expand(k.shape[0], -1, -1, -1), k, v))

    def fold_token_query(self, q: Tensor, rope_k: tuple[Tensor, Tensor]) -> TokenQuery:
        """Fold one batch-independent query token q (1, H, 1, hd) into the key projection.

        With R_j the RoPE rotation of key position j and s_j = src_norm(src)_j,
        q_h . R_j (Wk_h s_j + bk_h) = s_j . u_hj + c_hj where u_hj = Wk_h^T R_j^T q_h and
        c_hj = (R_j^T q_h) . bk_h, both scaled by 1/sqrt(hd). Cost N * D^2 once per call
        instead of 2 N D^2 per image for projecting keys and values (ATTN-1, WRITE-1).
        """
        cos, sin = rope_k
        H, N = self.num_heads, cos.shape[0]
        q_back = apply_rope(q.expand(-1, -1, N, -1), cos, -sin)[0]  # (H, N, hd): R_j^T q_h
        scale = q_back.shape[-1] ** -0.5
        wk = self.cattn.k.weight.unflatten(0, (H, -1))  # (D, D) -> (H, hd, D)
        u = torch.matmul(q_back, wk) * scale  # (H, N, hd) @ (H, hd, D) -> (H, N, D)
        bias = self.cattn.k.bias
        c = None if bias is None else (q_back @ bias.view(H, -1, 1))[..., 0] * scale  # (H, N)
        return TokenQuery(u, c)

    def attend_token(self, query: TokenQuery, src: Tensor) -> Tensor:
        """The folded token query attends src (B, N, D) -> (B, 1, D), without the residual.

        p_bh = softmax_j(s_bj . u_hj + c_hj); since sum_j p = 1 the value projection moves
        out of the sum: head_h = Wv_h (sum_j p_bhj s_bj) + bv_h; then proj.
        """
        H = self.num_heads
        s = self.src_norm(src)  # (B, N, D)
        scores = torch.einsum("bnd,hnd->bhn", s, query.u)  # (B, H, N)
        if query.c is not None:
            scores = scores + query.c
        mixed = torch.bmm(scores.softmax(-1), s)  # (B, H, N) @ (B, N, D) -> (B, H, D)
        wv = self.cattn.v.weight.unflatten(0, (H, -1))  # (D, D) -> (H, hd, D)
        heads = torch.einsum("bhd,hed->bhe", mixed, wv)  # (B, H, hd)
        if self.cattn.v.bias is not None:
            heads = heads + self.cattn.v.bias.view(H, -1)
        return self.cattn.proj(heads.flatten(1).unsqueeze(1))  # (B, H, hd) -> (B, 1, D)


class TokenQuery(NamedTuple):
    """A batch-independent query token folded into the key projection: u (H, N, D), c (H, N)
    or None without key bias (``CrossAttentionFusion.fold_token_query``)."""

    u: Tensor
    c: Tensor | None


class Block(nn.Module):
    """Pre-norm block (BLOCK-1): x + ls1 * SelfAttn(norm1 x); then x + ls2 * FFN(norm2 x)."""

    def __init__(self, dim: int, num_heads: int, hidden: int, qkv_bias: bool, proj_bias: bool,
                 layer_scale: bool):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads, qkv_bias, proj_bias)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = layer_norm(dim)
        self.ffn = Mlp(dim, hidden, dim)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], plan: AttentionPlan,
                widths: WidthGroups) -> Tensor:
        x = residual(x, self.ls1, self.attn(self.norm1(x), rope, plan))
        return residual(x, self.ls2, widths.apply(self.ffn, self.norm2(x)))


class WidthGroups:
    """The FFN hidden width of every batch row, grouped so each group is one sliced MLP.

    ``hidden`` is one width h for all rows (None: full width) or a tuple of per-row
    widths. A per-row list runs each distinct width on its rows only (MAT-3).
    """

    def __init__(self, hidden: int | None | tuple[int, ...]):
        self.hidden = hidden
        if isinstance(hidden, tuple) and len(set(hidden)) == 1:
            self.hidden = hidden[0]

    def rows(self, index: Sequence[int]) -> WidthGroups:
        """The widths of the rows ``index`` (a subset of the batch, in order)."""
        if not isinstance(self.hidden, tuple):
            return self
        return WidthGroups(tuple(self.hidden[i] for i in index))

    def apply(self, mlp: Mlp, x: Tensor) -> Tensor:
        if not isinstance(self.hidden, tuple):
            return mlp(x, self.hidden)
        out = None
        for h in sorted(set(self.hidden)):
            idx = torch.tensor([i for i, w in enumerate(self.hidden) if w == h], device=x.device)
            y = mlp(x.index_select(0, idx), h)  # (rows of width h, N, D)
            if out is None:
                out = y.new_empty(x.shape[:-1] + y.shape[-1:])
            out.index_copy_(0, idx, y)
        return out
