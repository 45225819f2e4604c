"""Building blocks: MLP with Matryoshka width, self-attention, cross-attention fusion, block.

Parameters keep the published checkpoint layout (``q``/``k``/``v``/``proj``,
``fc1``/``fc2``, ``norm1``, ``ls1.gamma`` ...). For inference the layers use
derived copies built lazily from those parameters (``DerivedWeights``): the fused
q/k/v (or k/v) projection, and fc1 padded with zero rows to a multiple of 16
hidden units (GEMMs with an odd output width run up to 2x slower; a zero row gives
GELU(0) = 0, so the padding is exact). The copies are rebuilt whenever a parameter
changes, and are bypassed when autograd needs the parameters or under
``torch.compile``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import AttentionPlan
from .rope import apply_rope

LN_EPS = 1e-6  # NUM-1: every LayerNorm (timm's) uses eps 1e-6
PAD_MULTIPLE = 16  # fc1 output width is padded to this multiple in the fast path


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm with affine weight and bias and eps 1e-6 (NUM-1)."""
    return nn.LayerNorm(dim, eps=LN_EPS)


def use_derived(*params: Tensor) -> bool:
    """True when derived copies of ``params`` may replace them: autograd does not need
    them, we are not tracing for torch.compile, and they carry version counters."""
    if torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return False
    return not any(p.is_inference() for p in params)


class DerivedWeights:
    """Pure LRU cache of tensors derived from parameters.

    An entry remembers its source parameters (a detached alias, which keeps their
    storage alive so its address cannot be reused) and their version counters: any
    in-place update (``load_state_dict``, ``copy_``), ``.to()`` or reassignment makes
    the entry stale and it is rebuilt. Results therefore never depend on earlier
    calls (STATE-1).
    """

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._entries: OrderedDict[object, tuple[list, tuple[Tensor | None, ...]]] = OrderedDict()

    def get(self, name: object, params: Sequence[Tensor | None],
            build: Callable[[], tuple[Tensor | None, ...]]) -> tuple[Tensor | None, ...]:
        hit = self._entries.get(name)
        if hit is not None and all(_same(seen, p) for seen, p in zip(hit[0], params, strict=True)):
            self._entries.move_to_end(name)
            return hit[1]
        with torch.no_grad():
            value = build()
        self._entries[name] = ([None if p is None else (p.detach(), p._version) for p in params],
                               value)
        self._entries.move_to_end(name)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def __deepcopy__(self, memo):
        return DerivedWeights(self.maxsize)


def _same(seen: tuple[Tensor, int] | None, p: Tensor | None) -> bool:
    """Is ``p`` still the tensor (storage, dtype, device, shape, version) seen at build time?"""
    if seen is None or p is None:
        return seen is None and p is None
    alias, version = seen
    return (alias.data_ptr() == p.data_ptr() and alias.dtype == p.dtype
            and alias.device == p.device and alias.shape == p.shape and version == p._version)


def _cat_or_none(tensors: Sequence[Tensor | None]) -> Tensor | None:
    return None if tensors[0] is None else torch.cat(list(tensors))


class Mlp(nn.Module):
    """FFN = fc2(GELU(fc1(x))) (BLOCK-3, NUM-2 exact erf GELU) with Matryoshka width.

    ``forward(x, hidden=h)`` keeps the first h hidden units: rows [:h] of fc1 and its
    bias, columns [:h] of fc2; fc2's bias is kept (MAT-1). The weights are sliced,
    never masked.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.hidden_features = hidden_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self._derived = DerivedWeights()

    def forward(self, x: Tensor, hidden: int | None = None) -> Tensor:
        h = self.hidden_features if hidden is None else hidden
        w1, b1 = self._fc1(h)
        a = F.gelu(F.linear(x, w1, b1))  # (..., h) or (..., h padded) with zero padding
        return F.linear(a[..., :h], self.fc2.weight[:, :h], self.fc2.bias)

    def _fc1(self, h: int) -> tuple[Tensor, Tensor]:
        """fc1 rows [:h]; in the fast path padded with zero rows to a multiple of 16."""
        w, b = self.fc1.weight, self.fc1.bias
        if h % PAD_MULTIPLE == 0 or not use_derived(w, b):
            return w[:h], b[:h]

        def padded() -> tuple[Tensor, Tensor]:
            hp = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE
            wp = w.new_zeros(hp, w.shape[1])  # (hp, D)
            bp = b.new_zeros(hp)  # (hp,)
            wp[:h] = w[:h]
            bp[:h] = b[:h]
            return wp, bp

        return self._derived.get(h, (w, b), padded)


class LayerScale(nn.Module):
    """x * gamma, gamma (D,) (BLOCK-2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, D) -> (B, H, N, hd), heads split as reshape(B, N, H, hd) (ATTN-1)."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, N, hd) -> (B, N, D)."""
    return x.transpose(1, 2).flatten(2)


def attend(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan | None = None) -> Tensor:
    """softmax(q k^T / sqrt(hd)) v over the keys the plan allows (ATTN-1, MASK-3..5).

    q (B, H, Nq, hd), k and v (B, H, Nk, hd) -> (B, H, Nq, hd). Without a plan all
    keys are attended. A block plan runs each block's queries over its key prefix.
    """
    if plan is None or (len(plan.spans) == 1 and not plan.causal):
        return F.scaled_dot_product_attention(q, k, v)
    if plan.causal:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    outs = [F.scaled_dot_product_attention(q[:, :, q0:q1], k[:, :, :k1], v[:, :, :k1])
            for q0, q1, k1 in plan.spans]
    return torch.cat(outs, dim=2)  # (B, H, N, hd)


class Projections(nn.Module):
    """The q, k, v and output projections of one attention (ATTN-1 / NUM-3)."""

    def __init__(self, dim: int, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self._derived = DerivedWeights()

    def heads(self, x: Tensor, names: tuple[str, ...], num_heads: int) -> tuple[Tensor, ...]:
        """x (B, N, D) projected by the named linears in one fused matmul, each result split
        into heads: a tuple of len(names) tensors (B, H, N, hd)."""
        layers = [getattr(self, name) for name in names]
        weights = [layer.weight for layer in layers]
        biases = [layer.bias for layer in layers]
        if use_derived(*weights, *(b for b in biases if b is not None)):
            w, b = self._derived.get(
                names, weights + biases, lambda: (torch.cat(weights), _cat_or_none(biases)))
        else:
            w, b = torch.cat(weights), _cat_or_none(biases)
        y = F.linear(x, w, b)  # (B, N, len(names) * D)
        y = y.unflatten(-1, (len(names), num_heads, -1))  # (B, N, len(names), H, hd)
        return y.permute(2, 0, 3, 1, 4).unbind(0)  # len(names) x (B, H, N, hd)


class SelfAttention(Projections):
    """Multi-head self-attention of the latents with RoPE on q and k (BLOCK-1, ROPE-4)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool):
        super().__init__(dim, qkv_bias, proj_bias)
        self.num_heads = num_heads

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], plan: AttentionPlan) -> Tensor:
        q, k, v = self.heads(x, ("q", "k", "v"), self.num_heads)  # (B, H, N, hd) each
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.proj(merge_heads(attend(q, k, v, plan)))


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
        return self.cattn.proj(merge_heads(attend(q.expand(k.shape[0], -1, -1, -1), k, v)))

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
        x = x + self.ls1(self.attn(self.norm1(x), rope, plan))
        return x + self.ls2(widths.apply(self.ffn, self.norm2(x)))


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
