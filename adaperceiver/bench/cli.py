"""Benchmark at the published size: ``python -m adaperceiver.bench [--quick] [--compile]``.

Model: embed 832, 13 heads, 21 blocks, ffn_ratio 2.57, 224x224 images, patch 16
(196 patches), random non-trivial weights, float32, ``torch.inference_mode``. For
batch 1 and 8 and each budget (N latents, FFN width, depth) it runs, interleaved in
the same rounds:

* ours: ``ClassificationAdaPerceiver``;
* the peer: the same model written the usual timm-ViT way (``bench.peer``), like the
  official code's fastest CPU path (which ignores the block mask, so does less work);
* the GEMM floor: every GEMM of our forward (shapes captured with the torch profiler)
  timed alone, best of several interleaved samples, summed: no implementation
  using these float32 GEMMs can beat it;
* optionally (``--compile``) ours through ``adaperceiver.compiled.compile_frozen``.

It prints medians with the spread (min..max) over the rounds, the speedup as the
median of per-round ratios (peer / ours, same round), our time over the GEMM floor,
the share of each forward spent outside GEMMs (torch profiler), the load average
before and after (``os.getloadavg``; a load above the core count means other work
competed, and the spreads show it), and for widths and per-sample early exit the
time relative to the full budget next to the FLOP ratio. ``naive_forward`` (mask
honouring, unfused) cross-checks our outputs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compiled import compile_frozen
from ..flops import flops
from ..layers import LN_EPS, CrossAttentionFusion, Mlp
from ..masks import attention_plan
from ..model import ClassificationAdaPerceiver
from ..rope import rope_tables
from . import anytime
from .peer import PeerAdaPerceiver
from .published import CONFIGS, WIDTHS, published_model
from .timing import add_round_arguments, interleaved, load, ratios, spread

GEMM_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm",
            "mkldnn::_linear_pointwise",  # eager float32 linears (layers.linear)
            "mkl::_mkl_linear")  # the compiled path's prepacked linears
ATTENTION_OPS = ("aten::_scaled_dot_product_flash_attention_for_cpu",
                 "aten::_scaled_dot_product_attention_math")

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

# --- profile: GEMM shapes and shares ------------------------------------------------------

class Profile(NamedTuple):
    """One profiled call: its GEMMs as (op, input shapes) -> count, and the shares of its
    wall time spent in GEMMs and in attention kernels."""

    gemms: Counter
    gemm_share: float
    attention_share: float


def profile_call(fn: Callable[[], object]) -> Profile:
    """Profile one call of ``fn`` (torch profiler, CPU ops with shapes)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                record_shapes=True) as prof:
        start = time.perf_counter()
        fn()
        wall_us = (time.perf_counter() - start) * 1e6
    gemms: Counter = Counter()
    gemm_us = attention_us = 0.0
    for event in prof.events():
        if event.name in GEMM_OPS:
            gemms[(event.name, tuple(tuple(s) for s in event.input_shapes))] += 1
            gemm_us += event.cpu_time_total
        elif event.name in ATTENTION_OPS:
            attention_us += event.cpu_time_total
    return Profile(gemms, gemm_us / wall_us, attention_us / wall_us)


def _gemm_call(op: str, shapes: tuple[tuple[int, ...], ...]) -> Callable[[], object]:
    """A call of ``op`` on fresh random operands of ``shapes``, the weight transposed as an
    nn.Linear weight is (addmm(bias, x, W^T), mm(x, W^T)); oneDNN's linear on the plain
    weight (x, W, b); bmm operands contiguous."""
    if op == "aten::addmm":
        bias, (m, k), (_, n) = shapes[:3]
        return partial(torch.addmm, torch.randn(bias), torch.randn(m, k), torch.randn(n, k).t())
    if op == "aten::mm":
        (m, k), (_, n) = shapes[:2]
        return partial(torch.mm, torch.randn(m, k), torch.randn(n, k).t())
    if op == "mkldnn::_linear_pointwise":
        x, w, bias = (torch.randn(s) if s else None for s in shapes[:3])
        return partial(torch.ops.mkldnn._linear_pointwise, x, w, bias, "none", [], "")
    if op == "aten::bmm":
        return partial(torch.bmm, *(torch.randn(s) for s in shapes[:2]))
    return partial(torch.baddbmm, *(torch.randn(s) for s in shapes[:3]))


def gemm_floor(gemms: Counter, samples: int) -> float:
    """Seconds the GEMMs ``gemms`` take alone: each distinct shape timed ``samples`` times
    (interleaved with the others), its best time times its count, summed."""
    calls = {key: _gemm_call(*key) for key in gemms}
    times = interleaved(calls, samples)
    return sum(min(times[key]) * count for key, count in gemms.items())


# --- rows ---------------------------------------------------------------------------------

HEADER = (f"{'N':>4} {'width':>5} {'depth':>5} {'B':>2} | {'ours ms':>20} | {'peer ms':>20} | "
          f"{'peer/ours':>17} | {'floor ms':>8} {'ours/floor':>10} | {'non-GEMM':>8} "
          f"{'(attn)':>6} {'peer non-GEMM':>13} | max rel diff")


def bench_config(model: ClassificationAdaPerceiver, peer: PeerAdaPerceiver, x: Tensor,
                 budget: tuple[int, int, int], rounds: int, samples: int,
                 extra: dict[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
    """One row: ours and the peer (and ``extra``) interleaved at ``budget`` (N, width, depth);
    prints it and returns the samples."""
    N, width, depth = budget
    ours = partial(model, x, num_tokens=N, mat_dim=width, depth=depth)
    theirs = partial(peer, x, N, width, depth)
    reference = naive_forward(model, x[:1], N, width, depth)
    diff = float((ours().logits[:1] - reference).abs().max() / reference.abs().max())
    mine, other = profile_call(ours), profile_call(theirs)
    floor = gemm_floor(mine.gemms, samples)
    t = interleaved({"ours": ours, "peer": theirs, **(extra or {})}, rounds)
    print(f"{N:>4} {width:>5} {depth:>5} {x.shape[0]:>2} | {spread(t['ours'], 1e3):>20} | "
          f"{spread(t['peer'], 1e3):>20} | {spread(ratios(t['peer'], t['ours']), 1, '.2f'):>17} | "
          f"{floor * 1e3:8.0f} {statistics.median(t['ours']) / floor:10.2f} | "
          f"{1 - mine.gemm_share:8.1%} {mine.attention_share:6.1%} {1 - other.gemm_share:13.1%} | "
          f"{diff:.0e}", flush=True)
    return t


def bench_widths(model: ClassificationAdaPerceiver, x: Tensor, budget: tuple[int, int, int],
                 rounds: int) -> None:
    """Each FFN width at ``budget``'s N and depth, interleaved in the same rounds: time
    relative to the full width (median [min..max] of per-round ratios) next to the FLOP
    ratio."""
    N, _, depth = budget
    fns = {w: partial(model, x, num_tokens=N, mat_dim=w, depth=depth) for w in WIDTHS}
    t = interleaved(fns, rounds)
    full = max(WIDTHS)
    for width in WIDTHS:
        gflop = flops(model.config, num_tokens=N, mat_dim=width, depth=depth)
        print(f"  width {width:>4} (N={N}, depth {depth}, B={x.shape[0]}): time / full "
              f"{spread(ratios(t[width], t[full]), 1, '.2f')}, FLOPs / full "
              f"{gflop / flops(model.config, num_tokens=N, mat_dim=full, depth=depth):.2f}",
              flush=True)


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


def bench_exit(model: ClassificationAdaPerceiver, x: Tensor, rounds: int) -> None:
    """Confidence exit with a tau that spreads the per-sample exit depths: time relative to
    the fixed full-depth run next to the FLOP ratio (mean over samples of each exit depth)."""
    tau = _spread_tau(_confidences(model, x))
    fns = {"full": partial(model, x)}
    fns.update({p: partial(model, x, depth_tau=tau, exit_policy=p)
                for p in ("batch_mean", "per_sample")})
    t = interleaved(fns, rounds)
    full = flops(model.config)
    for policy in ("batch_mean", "per_sample"):
        depths = fns[policy]().exit_depths.tolist()
        gflop = sum(flops(model.config, depth=d) for d in depths) / len(depths)
        print(f"  exit {policy:<10} tau={tau:.3g} B={x.shape[0]}: exit depths {depths}, "
              f"time / full {spread(ratios(t[policy], t['full']), 1, '.2f')}, "
              f"FLOPs / full {gflop / full:.2f}", flush=True)


def bench_compiled(model: ClassificationAdaPerceiver, compiled: Callable[..., object],
                   peer: PeerAdaPerceiver, x: Tensor, budget: tuple[int, int, int], rounds: int,
                   samples: int) -> None:
    """``compiled`` (``compile_frozen(model)``) at ``budget``, timed in the same rounds as
    eager ours and the peer (their row is printed first), with its own non-GEMM share; its
    first call at a new budget compiles that budget's graph."""
    N, width, depth = budget
    run = partial(compiled, x, num_tokens=N, mat_dim=width, depth=depth)
    start = time.perf_counter()
    run()
    cost = time.perf_counter() - start
    t = bench_config(model, peer, x, budget, rounds, samples, {"compiled": run})
    share = profile_call(run)
    print(f"  compiled (inductor, frozen weights): {spread(t['compiled'], 1e3)} ms, "
          f"peer / compiled {spread(ratios(t['peer'], t['compiled']), 1, '.2f')}, "
          f"ours eager / compiled {spread(ratios(t['ours'], t['compiled']), 1, '.2f')}, "
          f"non-GEMM {1 - share.gemm_share:.1%} (attn {share.attention_share:.1%}); "
          f"compile + first call {cost:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_round_arguments(parser, "3 rounds, 3 GEMM samples, width and exit rows at batch 8 only")
    parser.add_argument("--samples", type=int, default=7, help="samples per GEMM shape")
    parser.add_argument("--compile", action="store_true",
                        help="also time the compiled path at every budget (compiles for minutes)")
    parser.add_argument("--anytime", action="store_true",
                        help="then the anytime-grid rows (python -m adaperceiver.bench.anytime)")
    args = parser.parse_args(argv)
    rounds, samples = (3, 3) if args.quick else (args.rounds, args.samples)
    torch.manual_seed(0)
    model = published_model()
    peer = PeerAdaPerceiver(model.config).eval()
    peer.load_state_dict(model.state_dict())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load()}; {rounds} rounds; times in ms as median [min..max]; "
          "peer/ours = median [min..max] of per-round ratios; floor = our GEMMs alone; "
          "non-GEMM = share of the profiled forward outside GEMMs (attn: in attention kernels)")
    with torch.inference_mode():
        for batch in (1, 8):
            x = torch.randn(batch, 3, 224, 224)
            print(HEADER)
            for budget in CONFIGS:
                bench_config(model, peer, x, budget, rounds, samples)
            if batch > 1 or not args.quick:
                bench_widths(model, x, CONFIGS[0], rounds)
                bench_exit(model, x, rounds)
            print(f"load average now {load()}", flush=True)
    if args.compile:
        compiled = compile_frozen(model)
        with torch.no_grad():
            for batch in (1, 8):
                print(HEADER)
                x = torch.randn(batch, 3, 224, 224)
                for budget in CONFIGS:
                    bench_compiled(model, compiled, peer, x, budget, rounds, samples)
    print(f"load average at the end {load()}")
    if args.anytime:
        anytime.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    main()
