"""Attention plans and RoPE tables of the PyTorch model against the oracle's definitions."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from adaperceiver.layers import attend, merge_heads, split_heads
from adaperceiver.masks import attention_plan, granularities
from adaperceiver.rope import apply_rope, rope_tables
from reference_numpy.masks import granularities as oracle_granularities
from reference_numpy.masks import token_mask
from reference_numpy.ops import multi_head_attention
from reference_numpy.rope import apply_rope as oracle_apply_rope
from reference_numpy.rope import rope_angles


@given(st.integers(1, 40), st.lists(st.integers(1, 48), min_size=1, max_size=6, unique=True),
       st.sampled_from(["flex", "full"]), st.sampled_from(["block", "causal", "none"]))
def test_attention_plan_is_the_oracle_mask(N, grans, attn_layer, mask_type):
    """MASK-1..5: the plan admits exactly the (query, key) pairs of the oracle's boolean mask;
    its pair count is the mask's number of True entries."""
    grans = sorted(grans)
    assert granularities(grans, N) == tuple(oracle_granularities(grans, N))
    plan = attention_plan(attn_layer, mask_type, N, grans)
    expected = token_mask(attn_layer, mask_type, N, grans)
    expected = np.ones((N, N), dtype=bool) if expected is None else expected
    np.testing.assert_array_equal(plan.boolean_mask().numpy(), expected)
    assert plan.attended_pairs() == int(expected.sum())


def test_block_plan_spans():
    """MASK-2, MASK-3: grans [8, 16, 32] at N = 20 give blocks [0, 8), [8, 16), [16, 20) whose
    queries attend key prefixes 8, 16 and 20."""
    assert attention_plan("flex", "block", 20, [8, 16, 32]).spans == (
        (0, 8, 8), (8, 16, 16), (16, 20, 20))


@given(st.integers(1, 3), st.integers(1, 40),
       st.lists(st.integers(1, 48), min_size=1, max_size=6, unique=True),
       st.sampled_from(["block", "causal", "none"]), st.integers(0, 2**31 - 1))
def test_attend_follows_the_plan_like_the_oracle(B, N, grans, mask_type, seed):
    """ATTN-1, MASK-3..5: ``attend`` with a plan equals the oracle's attention under its
    boolean mask (float64), and a key the plan masks is never read: NaN written into the
    keys and values past the first block's prefix leaves that block's rows unchanged."""
    grans, H, hd = sorted(grans), 2, 4
    plan = attention_plan("flex", mask_type, N, grans)
    mask = token_mask("flex", mask_type, N, grans)
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, N, H * hd)) for _ in range(3))  # (B, N, D)
    expected = multi_head_attention(q, k, v, H, mask)
    q_t, k_t, v_t = (split_heads(torch.from_numpy(t), H) for t in (q, k, v))  # (B, H, N, hd)
    np.testing.assert_allclose(attend(q_t, k_t, v_t, plan).numpy(), expected, rtol=1e-12,
                               atol=1e-12)
    if mask_type == "block":
        q1, k1 = plan.spans[0][1:]  # the first block's queries [0, q1) attend keys [0, k1)
        k_t, v_t = k_t.clone(), v_t.clone()
        k_t[:, :, k1:] = v_t[:, :, k1:] = float("nan")
        np.testing.assert_allclose(attend(q_t, k_t, v_t, plan)[:, :q1].numpy(),
                                   expected[:, :q1], rtol=1e-12, atol=1e-12)


@given(st.integers(1, 70), st.sampled_from([2, 4, 8, 64]), st.integers(1, 64),
       st.sampled_from([10000, 500.0]))
def test_rope_matches_the_oracle(N, head_dim, L, theta):
    """ROPE-1..3: tables and rotation (adjacent pairs, NTK scaling above L) equal the
    oracle's in float64."""
    cos, sin = rope_tables(N, head_dim, theta, L, torch.device("cpu"))
    angles = rope_angles(N, head_dim, theta, L)
    np.testing.assert_allclose(cos.numpy(), np.cos(angles), rtol=0, atol=1e-13)
    np.testing.assert_allclose(sin.numpy(), np.sin(angles), rtol=0, atol=1e-13)
    x = np.random.default_rng(N).standard_normal((2, N, 2 * head_dim))  # (B, N, D), H = 2
    heads = split_heads(torch.from_numpy(x), 2)  # (B, H, N, hd)
    ours = merge_heads(apply_rope(heads, cos, sin)).numpy()
    np.testing.assert_allclose(ours, oracle_apply_rope(x, angles, 2), rtol=0, atol=1e-12)


@given(st.integers(1, 40), st.sampled_from([2, 8, 64]))
def test_rope_under_autograd(N, head_dim):
    """ROPE-1 while training: the rotation of a head view that requires grad equals the
    oracle's, and its gradient is the inverse rotation of the upstream gradient (R^T g,
    R orthogonal), i.e. the oracle's rotation by the negated angles."""
    cos, sin = rope_tables(N, head_dim, 10000, 64, torch.device("cpu"))
    angles = rope_angles(N, head_dim, 10000, 64)
    rng = np.random.default_rng(N)
    x, g = rng.standard_normal((2, 2, N, 3 * head_dim))  # (B, N, D) each, H = 3
    heads = split_heads(torch.from_numpy(x), 3).requires_grad_()  # (B, H, N, hd) view
    rotated = apply_rope(heads, cos, sin)
    np.testing.assert_allclose(merge_heads(rotated.detach()).numpy(),
                               oracle_apply_rope(x, angles, 3), rtol=0, atol=1e-12)
    rotated.backward(split_heads(torch.from_numpy(g), 3))
    np.testing.assert_allclose(merge_heads(heads.grad).numpy(),
                               oracle_apply_rope(g, -angles, 3), rtol=0, atol=1e-12)
