"""Execution modes (inference_mode, no_grad, autograd, bf16 autocast, torch.compile, CUDA),
the internal weight caches, per-sample exit compute and the analytic FLOP count."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torch_helpers import checkpoint, images, model_class, rel_err, run, tiny_config

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver, flops
from adaperceiver.bench.cli import naive_forward


@pytest.fixture(scope="module")
def loaded():
    config = tiny_config()
    with checkpoint(config, seed=4) as (path, weights):
        return ClassificationAdaPerceiver.from_pretrained(path), weights, config


def test_no_grad_and_autograd_paths_agree_with_inference_mode(loaded):
    """STATE-1, TOL-1: inference_mode (in-place GELU), no_grad and autograd (every
    intermediate kept for the backward pass) give the same logits; gradients reach every
    parameter used."""
    model, _, config = loaded
    x = torch.from_numpy(images(2, config)).float()
    args = dict(num_tokens=12, mat_dim=[5, 16])
    with torch.inference_mode():
        fast = model(x, **args).logits
    with torch.no_grad():
        assert rel_err(model(x, **args).logits, fast.double().numpy()) <= 1e-5
    out = model(x, **args).logits
    assert rel_err(out, fast.double().numpy()) <= 1e-5
    out.sum().backward()
    grad = model.blocks[0].ffn.fc1.weight.grad
    assert grad is not None and grad[:int(16 * 2.5)].abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_derived_weights_follow_parameter_updates():
    """STATE-1: results follow parameters changed in place (load_state_dict, copy_): no
    derived weight (fused q/k/v, padded fc1, or any other copy) may go stale."""
    config = tiny_config()
    with checkpoint(config, seed=1) as (path_a, weights_a):
        model = ClassificationAdaPerceiver.from_pretrained(path_a).double()
    with checkpoint(config, seed=2) as (path_b, weights_b):
        other = ClassificationAdaPerceiver.from_pretrained(path_b)
    x = images(2, config)
    assert rel_err(run(model, x, mat_dim=5).logits, rn.classify(weights_a, config, x, mat_dim=5)) \
        <= 1e-10
    model.load_state_dict(other.state_dict())
    assert rel_err(run(model, x, mat_dim=5).logits, rn.classify(weights_b, config, x, mat_dim=5)) \
        <= 1e-10
    with torch.no_grad():
        model.blocks[0].attn.k.weight.mul_(0.5)
    assert rel_err(run(model, x, mat_dim=5).logits,
                   rn.classify(weights_b, config, x, mat_dim=5)) > 1e-6
    fc1 = model.blocks[1].ffn.fc1
    fc1.weight = torch.nn.Parameter(torch.from_numpy(weights_b["blocks.1.ffn.fc1.weight"]) * 2)
    changed = dict(weights_b)
    changed["blocks.0.attn.k.weight"] = weights_b["blocks.0.attn.k.weight"] / 2
    changed["blocks.1.ffn.fc1.weight"] = weights_b["blocks.1.ffn.fc1.weight"] * 2
    expected = rn.classify(changed, config, x, mat_dim=5)
    assert rel_err(run(model, x, mat_dim=5).logits, expected) <= 1e-10
    model.float().double()  # .to() replaces every storage
    assert rel_err(run(model, x, mat_dim=5).logits, expected) <= 1e-6


def test_bfloat16_autocast_matches_oracle(loaded):
    """TOL-1 bfloat16 autocast: logits within 3e-2 of the oracle."""
    model, weights, config = loaded
    x = images(2, config)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.from_numpy(x).float(), num_tokens=12, mat_dim=[4, 16])
    ref = rn.classify(weights, config, x, num_tokens=12, mat_dim=[4, 16])
    assert rel_err(out.logits.float(), ref) <= 3e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_run(loaded, dtype):
    """TOL-1 (bfloat16 row, applied to a model cast to half precision): RoPE and pos-embed
    resampling run in float32, logits stay within 3e-2 of the oracle, exits work."""
    model, weights, config = loaded
    x = images(2, config)
    half = ClassificationAdaPerceiver(**config)
    half.load_state_dict(model.state_dict())
    half = half.to(dtype)
    for args in ({}, {"num_tokens": 12, "mat_dim": [4, 16]}):
        out = run(half, x, dtype, **args)
        assert out.logits.dtype == dtype
        assert rel_err(out.logits, rn.classify(weights, config, x, **args)) <= 3e-2
    resized = images(1, config, H=8, W=20)
    out = run(half, resized, dtype, depth_tau=0.5, exit_policy="per_sample")
    assert rel_err(out.logits, rn.classify(weights, config, resized,
                                           depth=int(out.exit_depths[0]))) <= 3e-2


def test_torch_compile_fullgraph(loaded):
    """TOL-1: torch.compile(fullgraph=True) traces the fixed-budget forward without graph
    breaks and reproduces eager results (dynamo with the eager backend keeps it fast)."""
    model, _, config = loaded
    x = torch.from_numpy(images(2, config)).float()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        for args in ({"num_tokens": 8, "mat_dim": 4}, {"depth": 2, "mat_dim": [4, 9]}):
            assert rel_err(compiled(x, **args).logits, model(x, **args).logits.double().numpy()) \
                <= 1e-6
    torch._dynamo.reset()


@pytest.mark.slow
def test_torch_compile_inductor(loaded):
    """TOL-1: torch.compile with the default (inductor) backend reproduces eager results."""
    model, _, config = loaded
    x = torch.from_numpy(images(2, config)).float()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert rel_err(compiled(x, num_tokens=8).logits,
                       model(x, num_tokens=8).logits.double().numpy()) <= 1e-5
    torch._dynamo.reset()


def test_per_sample_exit_drops_exited_rows_from_the_batch(loaded):
    """EXIT-3: samples that exited leave the batch: later blocks see only the rows still
    running, so compute falls with the number of early exits."""
    model, _, config = loaded
    x = torch.from_numpy(images(4, config, seed=2)).float()
    with torch.inference_mode():
        conf = model(x, depth=1).logits.softmax(-1).amax(-1)[:, 0]
        tau = float(conf.sort().values[1]) + 1e-6  # two samples exit after block 1
        rows = []
        hooks = [b.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
                 for b in model.blocks]
        try:
            out = model(x, depth_tau=tau, exit_policy="per_sample")
        finally:
            for h in hooks:
                h.remove()
    assert (out.exit_depths == 1).sum() == 2
    assert rows[0] == 4 and all(r <= 2 for r in rows[1:])


def _counted(model, x, **args) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        naive_forward(model, x, **args)
    return float(counter.get_total_flops())


@pytest.mark.parametrize("N, image", [(8, 16), (24, 16), (8, 24)])
def test_flops_equal_counted_flops_of_the_unmasked_model(N, image):
    """flops() equals the FLOPs torch's FlopCounterMode counts for the straightforward
    implementation (PATCH-1, READ-1, ATTN-1, BLOCK-3, WRITE-1, HEAD-1: full width,
    unmasked attention, per-image projections)."""
    config = tiny_config(attn_layer="full", mask_token_grans=[2, 4, 8])
    model = ClassificationAdaPerceiver(**config)
    x = torch.zeros(3, 3, image, image)
    counted = _counted(model, x, num_tokens=N, mat_dim=16, depth=2)
    assert flops(config, num_tokens=N, depth=2, image_size=image) * 3 == counted


def test_flops_count_masked_keys_widths_and_depths():
    """MASK-3, MAT-1, DEPTH-1: the block mask removes the masked (query, key) pairs (grans
    [2, 4, 8], N=8: 2*2 + 2*4 + 4*8 = 44 of 64 pairs), a width m removes 2*N*D*(F-h)
    multiply-adds per block, each block adds the same amount."""
    full = tiny_config(attn_layer="full", mask_token_grans=[2, 4, 8])
    block = tiny_config(mask_token_grans=[2, 4, 8])
    D, N, depth = 16, 8, 3
    assert flops(full, num_tokens=N) - flops(block, num_tokens=N) == 2 * depth * 2 * D * (64 - 44)
    F, h = 40, int(4 * 2.5)
    assert flops(full, num_tokens=N) - flops(full, num_tokens=N, mat_dim=4) == \
        2 * depth * 2 * N * D * (F - h)
    per_block = flops(full, num_tokens=N, depth=2) - flops(full, num_tokens=N, depth=1)
    assert flops(full, num_tokens=N, depth=3) - flops(full, num_tokens=N, depth=2) == per_block


def test_flops_of_the_published_model():
    """The published in1k-ft budget (N=256, full width, 21 blocks, 224x224) costs about
    75 GFLOPs per image; the distill model adds the feature write (DIST-2)."""
    config = rn.default_config(ffn_ratio=2.57, use_embed_ffn=True)
    total = flops(config)
    assert 70e9 < total < 80e9
    assert flops(config, num_tokens=32) < total / 5
    distill = rn.default_config("distill", ffn_ratio=2.57, use_embed_ffn=True, embed_dim=832,
                                num_heads=13, depth=21)
    assert flops(distill) > total


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["classification", "distill"])
def test_cuda_matches_cpu(kind):
    """TOL-1: on CUDA the model gives the CPU float64 results within float32 tolerance."""
    config = tiny_config(kind)
    with checkpoint(config) as (path, weights):
        model = model_class(config).from_pretrained(path, map_location="cuda")
    x = images(3, config)
    args = dict(num_tokens=12, mat_dim=[4, 8, 16])
    with torch.inference_mode():
        out = model(torch.from_numpy(x).float().cuda(), **args)
    ref = rn.trace(weights, config, x, **args)
    assert rel_err(out.logits.cpu(), ref.logits) <= 1e-4
    if kind == "classification":
        with torch.inference_mode():
            exit_out = model(torch.from_numpy(x).float().cuda(), depth_tau=0.3,
                             exit_policy="per_sample")
        assert exit_out.exit_depths.device.type == "cuda"
