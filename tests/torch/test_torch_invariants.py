"""Invariants of the PyTorch model, each checked against a second run of the model.

Prefix property (MASK-6), per-sample widths (MAT-3), depth truncation (DEPTH-1),
early exit equals fixed depth (EXIT-4), per-sample exit (EXIT-3), batch-mean exit
(EXIT-2), statelessness (STATE-1) and batching equivalence. float64 throughout, so
"equal" means within 1e-10 relative (TOL-1 float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch_helpers import checkpoint, images, model_class, rel_err, run, tiny_config

import reference_numpy as rn

RTOL = 1e-10


def _model(kind="classification", seed=0, **overrides):
    config = tiny_config(kind, **overrides)
    with checkpoint(config, seed=seed) as (path, _):
        return model_class(config).from_pretrained(path).double(), config


@given(st.sampled_from(["block", "causal"]), st.integers(0, 30), st.booleans())
def test_prefix_property(mask_type, seed, distill):
    """MASK-6: with flex attention and a block or causal mask, for N <= max_latent_tokens
    the first g latents after every block equal the run with N = g, for every granularity g."""
    model, config = _model("distill" if distill else "classification", seed=seed % 5,
                           block_mask=mask_type)
    x = images(2, config, seed=seed)
    full = run(model, x, return_stages=True).stages
    for g in config["mask_token_grans"][:-1]:
        small = run(model, x, num_tokens=g, return_stages=True).stages
        for name in ["read"] + [f"block_{d}" for d in range(config["depth"])]:
            assert rel_err(full[name][:, :g], small[name].numpy()) <= RTOL, (g, name)


def test_prefix_property_fails_without_a_mask():
    """MASK-6 is a property of the mask: with attn_layer "full" the prefix differs (MASK-1)."""
    model, config = _model(attn_layer="full")
    x = images(2, config)
    full = run(model, x, return_stages=True).stages["block_0"][:, :4]
    small = run(model, x, num_tokens=4, return_stages=True).stages["block_0"]
    assert rel_err(full, small.numpy()) > 1e-3


@given(st.lists(st.sampled_from([1, 4, 7, 16]), min_size=1, max_size=4))
def test_per_sample_widths_equal_scalar_width_per_row(widths):
    """MAT-3: a per-sample mat_dim list gives each row the result of its scalar width."""
    model, config = _model()
    x = images(len(widths), config, seed=len(widths))
    mixed = run(model, x, mat_dim=widths).logits
    for b, m in enumerate(widths):
        alone = run(model, x, mat_dim=m).logits[b]
        assert rel_err(mixed[b], alone.numpy()) <= RTOL


def test_width_changes_the_result_and_full_width_is_none():
    """MAT-1, MAT-4: a smaller width changes the logits; mat_dim == embed_dim equals None."""
    model, config = _model()
    x = images(2, config)
    full = run(model, x).logits
    assert rel_err(run(model, x, mat_dim=config["embed_dim"]).logits, full.numpy()) <= RTOL
    assert rel_err(run(model, x, mat_dim=4).logits, full.numpy()) > 1e-6


def test_depth_truncation_matches_stages():
    """DEPTH-1: depth d runs blocks 0..d-1: its latents equal stage block_{d-1} of the full
    run, and its stages stop there."""
    model, config = _model()
    x = images(3, config)
    full = run(model, x, return_stages=True).stages
    for d in range(1, config["depth"] + 1):
        out = run(model, x, depth=d, return_stages=True)
        assert [k for k in out.stages if k.startswith("block_")] == [f"block_{i}" for i in range(d)]
        assert rel_err(out.stages[f"block_{d - 1}"], full[f"block_{d - 1}"].numpy()) <= RTOL
        assert out.exit_depths.tolist() == [d] * 3


def _confidences(model, x, depth_total):
    """Per-sample max softmax probability of the fixed-depth logits after each depth (EXIT-1)."""
    return np.stack([run(model, x, depth=d).logits.softmax(-1).amax(-1)[:, 0].numpy()
                     for d in range(1, depth_total + 1)])  # (depth, B)


@given(st.floats(0.0, 1.0), st.integers(0, 20))
def test_per_sample_exit_depths_and_logits(tau, seed):
    """EXIT-3, EXIT-4: each sample exits at its own first depth with confidence >= tau (else
    the last block), and its logits equal the fixed-depth logits at that depth."""
    model, config = _model(seed=seed % 3, depth=3)
    x = images(4, config, seed=seed)
    conf = _confidences(model, x, 3)
    out = run(model, x, depth_tau=tau, exit_policy="per_sample")
    for b in range(4):
        hits = [d + 1 for d in range(3) if conf[d, b] >= tau]
        expected = hits[0] if hits else 3
        assert out.exit_depths[b].item() == expected
        fixed = run(model, x, depth=expected).logits[b]
        assert rel_err(out.logits[b], fixed.numpy()) <= RTOL


@given(st.floats(0.0, 1.0), st.integers(0, 20))
def test_batch_mean_exit(tau, seed):
    """EXIT-2, EXIT-4: everyone stops at the first depth whose batch-mean confidence >= tau
    (else the last block); logits equal the fixed-depth logits there."""
    model, config = _model(seed=seed % 3)
    x = images(3, config, seed=seed)
    conf = _confidences(model, x, config["depth"])
    hits = [d + 1 for d in range(config["depth"]) if conf[d].mean() >= tau]
    expected = hits[0] if hits else config["depth"]
    out = run(model, x, depth_tau=tau)
    assert out.exit_depths.tolist() == [expected] * 3
    assert rel_err(out.logits, run(model, x, depth=expected).logits.numpy()) <= RTOL


def test_per_sample_exit_stages_freeze_exited_rows():
    """EXIT-3: in the stages, rows of samples that exited keep their latents at exit."""
    model, config = _model(depth=3)
    x = images(4, config, seed=1)
    conf = _confidences(model, x, 3)
    tau = float(np.sort(conf[0])[1]) + 1e-9  # about half exit after block 1
    out = run(model, x, depth_tau=tau, exit_policy="per_sample", return_stages=True)
    full = run(model, x, return_stages=True).stages
    depths = out.exit_depths.tolist()
    assert 1 in depths and max(depths) > 1
    last = max(depths)
    for b, d in enumerate(depths):
        for k in range(last):
            expected = full[f"block_{min(k, d - 1)}"][b]
            assert rel_err(out.stages[f"block_{k}"][b], expected.numpy()) <= RTOL


def test_stateless_interleaved_calls():
    """STATE-1: results depend only on the call: interleaving other budgets (N, grans,
    widths, exits) leaves a call's result bit-identical to a fresh model's."""
    model, config = _model()
    fresh, _ = _model()
    x = images(2, config)
    calls = [dict(num_tokens=12), dict(num_tokens=5, token_grans=[1, 3]), dict(mat_dim=[4, 16]),
             dict(depth_tau=0.3, exit_policy="per_sample"), dict(num_tokens=20), {}]
    first = [run(model, x, **c).logits for c in calls]
    for c, before in zip(reversed(calls), reversed(first), strict=True):
        # equal up to float32 rounding; a state leak shows at 1e-3 (divergences.md #1)
        torch.testing.assert_close(run(model, x, **c).logits, before, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(run(fresh, x, **c).logits, before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["classification", "distill"])
def test_batching_equivalence(kind):
    """Rows are independent without batch-mean exit: a batch equals its rows run alone
    (fixed budgets, per-sample widths and per-sample exit)."""
    model, config = _model(kind)
    x = images(3, config, seed=4)
    calls = [dict(num_tokens=10, mat_dim=[3, 9, 16]), dict(depth=2)]
    if kind == "classification":
        calls.append(dict(depth_tau=0.2, exit_policy="per_sample"))
    for c in calls:
        batch = run(model, x, **c)
        for b in range(3):
            row_args = {**c, "mat_dim": c["mat_dim"][b]} if "mat_dim" in c else c
            alone = run(model, x[b:b + 1], **row_args)
            assert rel_err(batch.logits[b:b + 1], alone.logits.numpy()) <= RTOL
            if kind == "distill":
                assert rel_err(batch.features[b:b + 1], alone.features.numpy()) <= RTOL


def test_ntk_scaling_above_max_latent_tokens_moves_every_position():
    """ROPE-3: above max_latent_tokens all positions are rescaled, so the first latents of
    an N = 2L run differ from those of N = L (no prefix property there)."""
    model, config = _model(mask_token_grans=[4, 16], max_latent_tokens=16)
    x = images(1, config)
    base = run(model, x, num_tokens=16, return_stages=True).stages["read"][:, :4]
    longer = run(model, x, num_tokens=32, return_stages=True).stages["read"][:, :4]
    assert rel_err(longer, base.numpy()) > 1e-6
    ref = rn.trace(*_weights(config), x, num_tokens=32).stages["read"]
    assert rel_err(run(model, x, num_tokens=32, return_stages=True).stages["read"], ref) <= RTOL


def _weights(config):
    with checkpoint(config) as (_, weights):
        return weights, config
