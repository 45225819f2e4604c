"""Token masks of the processing blocks' self-attention, as attention plans (MASK-1..5).

A mask is never multiplied in: it is turned into an ``AttentionPlan`` that the
attention follows exactly (``layers.attend`` runs each span's queries against its key
prefix only, so masked keys get weight exactly 0 and cost nothing).

* block (MASK-3): the queries of block b (g_{b-1} <= i < g_b) attend keys [0, g_b).
  The plan lists one (query_start, query_end, key_end) span per block.
* causal (MASK-4): one span with ``causal=True``.
* none (MASK-5), or attn_layer "full" (MASK-1): one unmasked span over all keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionPlan:
    """How N latents attend: ``spans`` of (query_start, query_end, key_end); ``causal``
    makes each query i also require key j <= i."""

    num_tokens: int
    spans: tuple[tuple[int, int, int], ...]
    causal: bool = False

    def attended_pairs(self) -> int:
        """Total number of (query, key) pairs attended, for FLOP counts."""
        if self.causal:
            return self.num_tokens * (self.num_tokens + 1) // 2
        return sum((q1 - q0) * k1 for q0, q1, k1 in self.spans)

    def boolean_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The plan as a boolean (N, N) mask, True where query i may attend key j: j below
        the key end of i's span (and j <= i when causal), built in three small ops."""
        n = self.num_tokens
        ends = [0] * n  # key end of each query; 0 for a query in no span
        for q0, q1, k1 in self.spans:
            ends[q0:q1] = [k1] * (q1 - q0)
        keys = torch.arange(n, device=device)  # (N,)
        bound = torch.tensor(ends, device=device)
        if self.causal:
            bound = torch.minimum(bound, keys + 1)
        return keys < bound[:, None]  # (1, N) < (N, 1) -> (N, N)


def granularities(token_grans: Sequence[int], num_tokens: int) -> tuple[int, ...]:
    """Granularities for N latents (MASK-2): the values <= N, in order, with N appended
    when N exceeds the last kept value (or none is kept). ([8, 16, 32], 20) -> (8, 16, 20)."""
    kept = [int(g) for g in token_grans if g <= num_tokens]
    if not kept or num_tokens > kept[-1]:
        kept.append(num_tokens)
    return tuple(kept)


def attention_plan(attn_layer: str, mask_type: str, num_tokens: int,
                   token_grans: Sequence[int]) -> AttentionPlan:
    """The plan of the processing blocks for N latents (MASK-1..5)."""
    full = AttentionPlan(num_tokens, ((0, num_tokens, num_tokens),))
    if attn_layer == "full" or mask_type == "none":
        return full
    if mask_type == "causal":
        return AttentionPlan(num_tokens, full.spans, causal=True)
    grans = granularities(token_grans, num_tokens)
    starts = (0, *grans[:-1])
    return AttentionPlan(num_tokens, tuple((q0, g, g) for q0, g in zip(starts, grans, strict=True)))

