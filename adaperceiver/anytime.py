"""Anytime inference: every (depth x granularity) prediction of one call (ANY-1..6).

``anytime(model, x, ...)`` returns the grid ``logits[b, l, j]`` = the logits of
``model(x, num_tokens=G[j], depth=l+1, mat_dim=..., token_grans=...)`` for sample b
(ANY-1). When the prefix property holds (ANY-3: "flex" attention with the block or
causal mask, N <= max_latent_tokens) one pass of N latents serves every granularity:
after each block the write-out reads each prefix of g latents. Otherwise (ANY-4) the
grid is computed exactly by one pass per granularity, still one write-out per depth.

The write-out on a prefix (ANY-5): everything it needs from the latents is per token,
so it is computed once per depth on the N latents and reduced over the prefixes:
s = src_norm(z) (B, N, D); scores_bhn = s_bn . u_hn + c_hn with the write query folded
into the key projection (``CrossAttentionFusion.fold_token_query``); for each prefix
g_j, p = softmax over n < g_j of the scores (masked, (B, H, G, N)); mixed = p @ s
(B, H, G, D); head_h = Wv_h mixed_h + bv_h; out = token + proj(heads); logits = head.

``early_exit`` derives confidence early exit (EXIT-1..4) from the grid's last column
(ANY-6). Everything here is differentiable: training may put a loss on grid entries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .arguments import CallArgs, check_depth_tau, check_exit_policy, check_mat_dim, parse_call
from .config import is_int
from .flops import anytime_flops, one_pass_exact
from .layers import CrossAttentionFusion, TokenQuery, WidthGroups
from .masks import granularities

__all__ = ["AnytimeOutput", "anytime", "early_exit", "one_pass_exact"]


@dataclass
class AnytimeOutput:
    """The anytime grid of one call (ANY-1, ANY-2).

    logits (B, K, G, C): entry [b, l, j] is sample b's logits at depth l + 1 with
    G[j] latents; depths (1, ..., K); granularities G (MASK-2 of the call's N and
    token_grans); gflops (K, G) float64 array, the analytic GFLOPs per image of each
    entry as a single run (the mean over the batch for per-sample widths); grid_gflops,
    the analytic GFLOPs per image of computing the grid; one_pass, whether one pass
    served every granularity (ANY-3) or the exact fallback ran (ANY-4).
    """

    logits: Tensor
    depths: tuple[int, ...]
    granularities: tuple[int, ...]
    gflops: np.ndarray
    grid_gflops: float
    one_pass: bool


def anytime(model: Any, x: Tensor, num_tokens: int | None = None,
            mat_dim: int | list[int] | None = None,
            token_grans: list[int] | None = None) -> AnytimeOutput:
    """The anytime grid of ``model`` (a Classification- or DistillAdaPerceiver) on images x.

    Arguments are checked as in ``forward`` (ARG-1, ARG-2, ARG-5, ARG-7). For the distill
    model the grid holds logits only, no features (ANY-2).
    """
    call = parse_call(model.config, x, num_tokens=num_tokens, mat_dim=mat_dim,
                      token_grans=token_grans)
    N = call.num_tokens
    grans = granularities(call.token_grans, N)
    one_pass = one_pass_exact(model.config, N)
    if one_pass:
        logits = _pass(model, x, call, grans)  # (B, K, G, C)
    else:  # ANY-4: one pass per granularity, written out on all its latents
        logits = torch.cat([_pass(model, x, replace(call, num_tokens=g), (g,)) for g in grans],
                           dim=2)  # G x (B, K, 1, C) -> (B, K, G, C)
    widths = check_mat_dim(mat_dim, model.config, x.shape[0])  # one int per row, or None
    cost = anytime_flops(model.config, num_tokens=N, mat_dim=widths and list(widths),
                         token_grans=call.token_grans, image_size=tuple(x.shape[-2:]))
    return AnytimeOutput(logits, tuple(range(1, model.config["depth"] + 1)), grans,
                         cost.entries / 1e9, cost.grid / 1e9, one_pass)


def _pass(model: Any, x: Tensor, call: CallArgs, grans: tuple[int, ...]) -> Tensor:
    """One pass of call.num_tokens latents through every block; after each block the
    write-out on each prefix in ``grans``. Returns logits (B, K, len(grans), C)."""
    _, latents, rope, _ = model._start(x, call, False)
    plan = model._plan(call)
    query = model._write_query(rope)
    widths = WidthGroups(call.hidden)
    rows = []
    for block in model.blocks:
        latents = block(latents, rope, plan, widths)
        out = model.output_latents.token + prefix_write(model.write_head, query, latents, grans)
        rows.append(model.output_adapter(out))  # (B, G, C)
    return torch.stack(rows, dim=1)  # K x (B, G, C) -> (B, K, G, C)


def prefix_write(head: CrossAttentionFusion, query: TokenQuery, latents: Tensor,
                 grans: tuple[int, ...]) -> Tensor:
    """The folded token query attends each prefix latents[:, :g] (WRITE-1, ANY-5).

    latents (B, N, D), query for positions 0..N-1, grans increasing with grans[-1] <= N.
    Returns the write outputs without the residual, (B, G, D): row j equals
    ``head.attend_token(query restricted to g_j, latents[:, :g_j])``.
    """
    H, N = head.num_heads, latents.shape[1]
    s = head.src_norm(latents)  # (B, N, D), per token: shared by every prefix
    scores = torch.einsum("bnd,hnd->bhn", s, query.u[:, :N])  # (B, H, N)
    if query.c is not None:
        scores = scores + query.c[:, :N]
    ends = torch.tensor(grans, device=latents.device)
    outside = torch.arange(N, device=latents.device) >= ends[:, None]  # (G, N): key n >= g_j
    masked = scores.unsqueeze(2).masked_fill(outside, float("-inf"))  # (B, H, G, N)
    weights = masked.softmax(-1).flatten(1, 2)  # (B, H*G, N)
    mixed = torch.bmm(weights, s).unflatten(1, (H, len(grans)))  # (B, H, G, D)
    wv = head.cattn.v.weight.unflatten(0, (H, -1))  # (D, D) -> (H, hd, D)
    heads = torch.einsum("bhgd,hed->bghe", mixed, wv)  # (B, G, H, hd)
    if head.cattn.v.bias is not None:
        heads = heads + head.cattn.v.bias.view(H, -1)
    return head.cattn.proj(heads.flatten(2))  # (B, G, H, hd) -> (B, G, D)


def early_exit(logits_by_depth: Tensor, depth_tau: float, exit_policy: str = "batch_mean",
               batch_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Confidence early exit from per-depth logits (EXIT-1..4, ANY-6).

    logits_by_depth (B, K, C): sample b's logits after each depth, e.g.
    ``AnytimeOutput.logits[:, :, -1]`` (the grid column of N latents). With
    kappa_bl = max_c softmax(logits_bl) (computed in the logits' dtype, then float64,
    as ``forward`` does):

    * "per_sample": e_b = the first depth l with kappa_bl >= tau, else K (EXIT-3);
    * "batch_mean": the rows are cut into consecutive batches of ``batch_size`` rows
      (rows [0, bs), [bs, 2 bs), ...; the last may be shorter; None: one batch of all
      B rows), and every row of a batch exits at the first depth where the batch's mean
      kappa >= tau, else K (EXIT-2): what ``forward(depth_tau=tau)`` returns when the
      set is fed to it in those batches.

    Returns (exit depths (B,) int64 in 1..K, logits (B, C) at each row's exit depth).
    """
    if not isinstance(logits_by_depth, Tensor) or logits_by_depth.ndim != 3:
        raise ValueError(f"logits_by_depth must be a tensor (B, K, C), got "
                         f"{getattr(logits_by_depth, 'shape', type(logits_by_depth).__name__)}")
    tau = check_depth_tau(depth_tau, None)
    if tau is None:
        raise TypeError("depth_tau must be a real number in [0, 1], got None")
    policy = check_exit_policy(exit_policy)
    B = logits_by_depth.shape[0]
    if batch_size is not None and not (is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    kappa = logits_by_depth.detach().softmax(-1).amax(-1).double()  # (B, K)
    if policy == "batch_mean":
        size = B if batch_size is None else int(batch_size)
        chunks = kappa.split(size)  # consecutive batches of `size` rows
        kappa = torch.cat([chunk.mean(0, keepdim=True).expand_as(chunk) for chunk in chunks])
    reached = kappa >= tau  # (B, K)
    reached[:, -1] = True  # nobody runs past the last block
    depth_index = reached.int().argmax(1)  # first True per row, 0-based
    logits = logits_by_depth[torch.arange(B, device=logits_by_depth.device), depth_index]
    return depth_index.to(torch.int64) + 1, logits
