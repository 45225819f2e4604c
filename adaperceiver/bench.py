"""Throughput benchmark at the published size: ``python -m adaperceiver.bench [--quick]``.

Model: embed 832, 13 heads, 21 blocks, ffn_ratio 2.57, 224x224 images, patch 16
(196 patches), random non-trivial weights, float32, ``torch.inference_mode``. For
batch 1 and 8 and each budget (N, width, depth) it prints images/s, analytic
GFLOPs per image (``flops``), achieved GFLOP/s and its ratio to this machine's
float32 matmul peak, measured in the same run (best 2048x2048 ``torch.mm``). A naive
implementation (conv2d, separate q/k/v, masked attention over all N latents, FFN
width by multiplying with a 0/1 mask, RoPE via complex numbers, explicit
softmax(q k^T) v) runs interleaved with the fast one, giving a speedup ratio and a
cross-check of the outputs.
Timings are the best of interleaved rounds; the machine may be shared, so compare ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from .flops import flops
from .layers import LN_EPS, CrossAttentionFusion, Mlp
from .masks import attention_plan
from .model import ClassificationAdaPerceiver
from .rope import rope_tables

PUBLISHED = dict(embed_dim=832, num_heads=13, depth=21, max_latent_tokens=256, ffn_ratio=2.57,
                 mask_token_grans=[32, 64, 96, 128, 192, 256], mat_dims=[416, 624, 832],
                 img_size=224, patch_size=16, num_classes=1000, use_embed_ffn=True)
BUDGETS = [(256, 832, 21), (128, 832, 21), (32, 832, 21), (256, 416, 21), (256, 832, 10)]


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


# --- naive baseline ---------------------------------------------------------------------

def _naive_rope(x: Tensor, angles: Tensor) -> Tensor:
    """x (B, N, H, hd) rotated as complex pairs by angles (N, hd/2)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    return torch.view_as_real(rotated).flatten(-2).type_as(x)


def _naive_attention(cattn, xq: Tensor, xkv: Tensor, H: int, angles: Tensor, rope_q: bool,
                     rope_k: bool, mask: Tensor | None = None) -> Tensor:
    B, Nq, D = xq.shape
    q = cattn.q(xq).reshape(B, Nq, H, D // H)
    k = cattn.k(xkv).reshape(B, xkv.shape[1], H, D // H)
    v = cattn.v(xkv).reshape(B, xkv.shape[1], H, D // H)
    q = _naive_rope(q, angles) if rope_q else q
    k = _naive_rope(k, angles) if rope_k else k
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, N, hd)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)  # (B, H, Nq, Nk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = scores.softmax(-1) @ v  # (B, H, Nq, hd)
    return cattn.proj(out.transpose(1, 2).reshape(B, Nq, D))


def _naive_cross(fusion: CrossAttentionFusion, sink: Tensor, src: Tensor, angles: Tensor,
                 rope_q: bool, rope_k: bool) -> Tensor:
    ln = torch.nn.functional.layer_norm
    D = sink.shape[-1]
    q_in = ln(sink, (D,), fusion.snk_norm.weight, fusion.snk_norm.bias, LN_EPS)
    kv_in = ln(src, (D,), fusion.src_norm.weight, fusion.src_norm.bias, LN_EPS)
    return _naive_attention(fusion.cattn, q_in, kv_in, fusion.num_heads, angles, rope_q, rope_k)


def _naive_mlp(mlp: Mlp, x: Tensor, width_mask: Tensor | None = None) -> Tensor:
    a = F.gelu(mlp.fc1(x))
    return mlp.fc2(a if width_mask is None else a * width_mask)


def naive_forward(model: ClassificationAdaPerceiver, x: Tensor, num_tokens: int, mat_dim: int,
                  depth: int) -> Tensor:
    """Straightforward unfused forward (logits (B, 1, C)) used as the baseline."""
    c = model.config
    B, D, H, N = x.shape[0], c["embed_dim"], c["num_heads"], num_tokens
    pe = model.patch_embed
    patches = F.conv2d(x, pe.embed.proj.weight, pe.embed.proj.bias, stride=c["patch_size"])
    pos = pe.position_embedding(*patches.shape[-2:])  # (1, M, D)
    patches = patches.flatten(2).transpose(1, 2) + pos  # (B, D, gh, gw) -> (B, M, D)
    patches = _naive_mlp(pe.ffn, pe.norm(patches))
    cos, sin = rope_tables(N, D // H, c["rope_theta"], c["max_latent_tokens"], x.device)
    angles = torch.atan2(sin, cos).float()  # (N, hd/2)
    latents = model.process_latents.token.expand(B, N, D)
    latents = latents + _naive_cross(model.read_head, latents, patches, angles, True, False)
    mask = attention_plan(c["attn_layer"], c["block_mask"], N, c["mask_token_grans"]).boolean_mask()
    width_mask = (torch.arange(model.hidden) < int(mat_dim * c["ffn_ratio"])).float()
    for block in model.blocks[:depth]:
        h = block.norm1(latents)
        attn = _naive_attention(block.attn, h, h, H, angles, True, True, mask)
        latents = latents + block.ls1(attn)
        latents = latents + block.ls2(_naive_mlp(block.ffn, block.norm2(latents), width_mask))
    out = model.output_latents.token.expand(B, 1, D)
    out = out + _naive_cross(model.write_head, out, latents, angles, False, True)
    return model.output_adapter(out)


# --- measurement ------------------------------------------------------------------------

def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time of each function over ``rounds`` rounds; every round calls all of them
    in turn (after one warm-up call each), so drift of a shared machine hits all alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _matmul(size: int = 2048) -> tuple[Callable[[], object], float]:
    """A float32 size x size torch.mm and its FLOPs (the peak reference)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return partial(torch.mm, a, b), 2.0 * size**3


def _row(label: str, batch: int, seconds: float, gflop_per_image: float, peak: float,
         extra: str = "") -> None:
    rate = gflop_per_image * batch / seconds
    print(f"{label:<30} B={batch:<2} {batch / seconds:7.2f} img/s {gflop_per_image:6.2f} GFLOP/img "
          f"{rate:6.1f} GFLOP/s = {rate / peak:4.0%} of peak {peak:5.1f} {extra}", flush=True)


def bench_budgets(model: ClassificationAdaPerceiver, batch: int, rounds: int) -> None:
    """Fixed budgets: fast vs naive vs matmul peak, interleaved."""
    x = torch.randn(batch, 3, 224, 224)
    mm, mm_flops = _matmul()
    for N, width, depth in BUDGETS:
        gflop = flops(model.config, num_tokens=N, mat_dim=width, depth=depth) / 1e9
        fast = partial(model, x, num_tokens=N, mat_dim=width, depth=depth)
        naive = partial(naive_forward, model, x, N, width, depth)
        reference = naive()
        diff = float((fast().logits - reference).abs().max() / reference.abs().max())
        t = interleaved({"fast": fast, "naive": naive, "mm": mm}, rounds)
        peak = mm_flops / t["mm"] / 1e9
        _row(f"N={N} width={width} depth={depth}", batch, t["fast"], gflop, peak,
             f"| naive {batch / t['naive']:5.2f} img/s, speedup {t['naive'] / t['fast']:4.2f}x, "
             f"max rel diff {diff:.0e}")


def _confidences(model: ClassificationAdaPerceiver, x: Tensor) -> Tensor:
    """Per-sample confidence after every block (EXIT-1), (depth, B)."""
    stages = model(x, return_stages=True).stages
    query = model._write_query(model._rope(model.config["max_latent_tokens"], x.device, x.dtype))
    return torch.stack([model.output_adapter(model._write(stages[f"block_{d}"], query))
                        .softmax(-1).amax(-1)[:, 0] for d in range(model.config["depth"])])


def _spread_tau(conf: Tensor) -> float:
    """A tau whose per-sample exit depths are the most varied, preferring early exits."""
    depth = conf.shape[0]

    def exits(tau: float) -> list[int]:
        hit = conf >= tau  # (depth, B)
        return [int(col.nonzero()[0]) + 1 if col.any() else depth for col in hit.T]

    candidates = conf[: depth // 2].flatten().tolist()
    return max(candidates, key=lambda t: (len(set(exits(t))), -sum(exits(t))))


def bench_exit(model: ClassificationAdaPerceiver, batch: int, rounds: int) -> None:
    """Confidence exit with a tau that spreads the per-sample exit depths, against the fixed
    full-depth run; GFLOP/img is the mean over samples of flops at each exit depth."""
    x = torch.randn(batch, 3, 224, 224)
    tau = _spread_tau(_confidences(model, x))
    mm, mm_flops = _matmul()
    fns = {"full": partial(model, x), "mm": mm}
    fns.update({p: partial(model, x, depth_tau=tau, exit_policy=p)
                for p in ("batch_mean", "per_sample")})
    t = interleaved(fns, rounds)
    peak = mm_flops / t["mm"] / 1e9
    _row("fixed depth 21", batch, t["full"], flops(model.config) / 1e9, peak)
    for policy in ("batch_mean", "per_sample"):
        depths = fns[policy]().exit_depths.tolist()
        gflop = sum(flops(model.config, depth=d) for d in depths) / len(depths) / 1e9
        _row(f"exit {policy} tau={tau:.3g}", batch, t[policy], gflop, peak,
             f"| exit depths {depths}, time / full depth {t[policy] / t['full']:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8 only, one round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    torch.manual_seed(0)
    model = ClassificationAdaPerceiver(**PUBLISHED).eval()
    randomize(model)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f}; peak = best float32 2048x2048 torch.mm in the same rounds; "
          "GFLOP/img = adaperceiver.flops")
    with torch.inference_mode():
        for batch in (8,) if args.quick else (1, 8):
            bench_budgets(model, batch, rounds)
            bench_exit(model, batch, rounds)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
