"""Semantic properties of the NumPy oracle on tiny models (spec semantics.md).

Expected values come from the spec's definitions (hand-written matrices, literal
lists, a complex-number RoPE, independent softmax of fixed-depth runs), never from
the code under test.
"""

import copy

import numpy as np
import pytest

from reference_numpy import distill, random_weights, tiny_config, trace
from reference_numpy.masks import granularities, token_mask
from reference_numpy.rope import apply_rope, rope_angles, rope_frequencies

TOL = 1e-12
# Two runs that must agree: equal up to float64 rounding (BLAS kernels may differ in the
# last bits between shapes and machines, docs/development.md).
SAME = {"rtol": TOL, "atol": TOL}


def model(kind="classification", seed=0, **overrides):
    config = tiny_config(kind, **overrides)
    return random_weights(config, seed=seed), config


def images(B=2, H=16, W=16, seed=1):
    return np.random.default_rng(seed).standard_normal((B, 3, H, W))


# --------------------------------------------------------------------------- masks


def test_block_mask_structure():
    """MASK-3: query i in block b attends key j iff j < g_b (hand-written 5x5 matrix)."""
    expected = np.array([
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
    ], dtype=bool)
    np.testing.assert_array_equal(token_mask("flex", "block", 5, [2, 8]), expected)
    three = token_mask("flex", "block", 6, [1, 3, 6])
    np.testing.assert_array_equal(three[0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(three[1], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(three[2], [1, 1, 1, 0, 0, 0])
    assert three[3:].all()


def test_causal_and_none_masks():
    """MASK-4, MASK-5: causal is j <= i; none attends everything."""
    np.testing.assert_array_equal(token_mask("flex", "causal", 4, [2]), np.tril(np.ones((4, 4))))
    assert token_mask("flex", "none", 4, [2]).all()


@pytest.mark.parametrize("mask_type", ["block", "causal", "none"])
def test_full_attention_layer_ignores_the_mask(mask_type):
    """MASK-1: attn_layer "full" uses no mask whatever block_mask says."""
    assert token_mask("full", mask_type, 8, [2, 4]) is None


def test_full_attention_layer_results_do_not_depend_on_block_mask():
    """MASK-1: with attn_layer "full" the three mask types give identical logits and
    equal flex + "none"; with flex, block and none differ."""
    x = images()
    logits = {}
    for layer in ("flex", "full"):
        for mask in ("block", "causal", "none"):
            w, c = model(attn_layer=layer, block_mask=mask)
            logits[layer, mask] = trace(w, c, x).logits
    for mask in ("block", "causal", "none"):
        np.testing.assert_allclose(logits["full", mask], logits["flex", "none"], **SAME)
    assert np.max(np.abs(logits["flex", "block"] - logits["flex", "none"])) > 1e-6


@pytest.mark.parametrize(
    "grans, N, expected",
    [
        ([8, 16, 32], 20, [8, 16, 20]),
        ([8, 16, 32], 32, [8, 16, 32]),
        ([8, 16, 32], 40, [8, 16, 32, 40]),
        ([8, 16], 16, [8, 16]),
        ([8, 16], 4, [4]),
        ([8], 8, [8]),
        ([], 5, [5]),
    ],
)
def test_granularity_filtering(grans, N, expected):
    """MASK-2: values <= N kept, N appended when it exceeds the last kept (or none kept)."""
    assert granularities(grans, N) == expected


# --------------------------------------------------------------------------- RoPE


def test_rope_rotates_adjacent_pairs_as_complex_numbers():
    """ROPE-1, ROPE-2: per head, channels (2i, 2i+1) form x_2i + i x_2i+1, multiplied by
    exp(i p theta^(-2i/hd)) at position p (hand-written complex computation)."""
    B, N, H, hd, theta = 2, 5, 3, 8, 100.0
    x = np.random.default_rng(0).standard_normal((B, N, H * hd))
    expected = np.empty_like(x)
    for h in range(H):
        for i in range(hd // 2):
            c = h * hd + 2 * i
            z = x[..., c] + 1j * x[..., c + 1]
            z = z * np.exp(1j * np.arange(N) * theta ** (-2 * i / hd))
            expected[..., c], expected[..., c + 1] = z.real, z.imag
    ours = apply_rope(x, rope_angles(N, hd, theta, max_latent_tokens=64), H)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)


def test_rope_ntk_scaling():
    """ROPE-3: for N > L every f_i is divided by N / L; for N <= L no scaling."""
    hd, theta, L = 8, 10000.0, 16
    base = np.array([theta ** (-2 * i / hd) for i in range(hd // 2)])
    np.testing.assert_allclose(rope_frequencies(hd, 16, theta, L), base, rtol=1e-15)
    for N in (1, 3, 8, 15):
        np.testing.assert_allclose(rope_frequencies(hd, N, theta, L), base, rtol=1e-15)
    np.testing.assert_allclose(rope_frequencies(hd, 17, theta, L), base * 16 / 17, rtol=1e-15)
    np.testing.assert_allclose(rope_frequencies(hd, 40, theta, L), base * 16 / 40, rtol=1e-15)


def test_single_latent_sits_at_position_zero():
    """ROPE-2, LAT-1: with N = 1 the only latent has position 0 (no rotation), so rope_theta
    is irrelevant; with N = 2 it matters."""
    x = images()
    w, c = model()
    w2, c2 = model(rope_theta=37.0)
    np.testing.assert_allclose(trace(w, c, x, num_tokens=1).logits,
                               trace(w2, c2, x, num_tokens=1).logits, **SAME)
    assert np.max(np.abs(trace(w, c, x, num_tokens=2).logits
                         - trace(w2, c2, x, num_tokens=2).logits)) > 1e-9


# --------------------------------------------------------------------------- prefix property


@pytest.mark.parametrize("mask_type, grans", [("block", [2, 4, 8, 16]), ("causal", [3, 5, 16])])
def test_prefix_property(mask_type, grans):
    """MASK-6, MASK-3, MASK-4: for N <= max_latent_tokens the first g latents after every
    block equal the run with N = g, for each granularity g of the run."""
    w, c = model(block_mask=mask_type, mask_token_grans=grans)
    x = images()
    full = trace(w, c, x, num_tokens=16)
    for g in grans[:-1]:
        short = trace(w, c, x, num_tokens=g)
        for name in ("read", "block_0", "block_1", "block_2"):
            np.testing.assert_allclose(full.stages[name][:, :g], short.stages[name],
                                       rtol=0, atol=TOL, err_msg=f"g={g} {name}")


def test_prefix_property_fails_without_mask_and_above_max_latent_tokens():
    """MASK-6, ROPE-3: with mask "none" later latents leak into the prefix; with
    N > max_latent_tokens NTK scaling moves every position, so the prefix changes too."""
    x = images()
    w, c = model(block_mask="none")
    leak = trace(w, c, x, num_tokens=16).stages["block_0"][:, :4]
    assert np.max(np.abs(leak - trace(w, c, x, num_tokens=4).stages["block_0"])) > 1e-6

    w, c = model()
    above = trace(w, c, x, num_tokens=24)  # grans [2, 4, 8, 16, 24]
    for name in ("read", "block_2"):
        diff = np.max(np.abs(above.stages[name][:, :8] - trace(w, c, x, num_tokens=8).stages[name]))
        assert diff > 1e-6, name


# --------------------------------------------------------------------------- width


def test_per_sample_width_list_equals_per_row_scalar():
    """MAT-3: mat_dim as a per-sample list gives row b the result of the scalar mat_dim[b]."""
    w, c = model()
    x = images(B=3)
    widths = [3, 16, 8]
    mixed = trace(w, c, x, mat_dim=widths)
    for b, m in enumerate(widths):
        single = trace(w, c, x, mat_dim=m)
        np.testing.assert_allclose(mixed.logits[b], single.logits[b], rtol=0, atol=TOL)
        np.testing.assert_allclose(mixed.stages["block_2"][b], single.stages["block_2"][b],
                                   rtol=0, atol=TOL)


def test_width_keeps_first_hidden_units_of_block_ffns():
    """MAT-1: mat_dim m keeps the first int(m * ffn_ratio) hidden units (fc1 rows and bias,
    fc2 columns; fc2 bias kept): equal to a full-width run whose other units are zeroed.
    m = 3, ffn_ratio 2.5 -> int(7.5) = 7 units."""
    w, c = model()
    x = images()
    h = 7
    zeroed = copy.deepcopy(w)
    for i in range(c["depth"]):
        zeroed[f"blocks.{i}.ffn.fc1.weight"][h:] = 0.0
        zeroed[f"blocks.{i}.ffn.fc1.bias"][h:] = 0.0
        zeroed[f"blocks.{i}.ffn.fc2.weight"][:, h:] = 0.0
    np.testing.assert_allclose(trace(w, c, x, mat_dim=3).logits, trace(zeroed, c, x).logits,
                               rtol=0, atol=TOL)
    assert np.max(np.abs(trace(w, c, x, mat_dim=3).logits - trace(w, c, x).logits)) > 1e-6


def test_width_slices_only_processing_blocks():
    """MAT-2: under mat_dim 3 the unused block-FFN units do not matter, but the embed FFN
    is never sliced (its high units still matter)."""
    w, c = model()
    x = images()
    base = trace(w, c, x, mat_dim=3).logits
    blocks_changed = copy.deepcopy(w)
    blocks_changed["blocks.0.ffn.fc1.weight"][7:] += 1.0
    np.testing.assert_allclose(trace(blocks_changed, c, x, mat_dim=3).logits, base, **SAME)
    embed_changed = copy.deepcopy(w)
    embed_changed["patch_embed.ffn.fc1.weight"][7:] += 1.0
    assert np.max(np.abs(trace(embed_changed, c, x, mat_dim=3).logits - base)) > 1e-6


def test_full_mat_dim_is_full_width():
    """MAT-4: mat_dim None and mat_dim == embed_dim both use all F hidden units."""
    w, c = model()
    x = images()
    np.testing.assert_allclose(trace(w, c, x, mat_dim=16).logits, trace(w, c, x).logits, **SAME)


# --------------------------------------------------------------------------- depth and exit


def test_depth_truncation():
    """DEPTH-1, OUT-1: depth d runs blocks 0..d-1 only (their stages equal the full run's),
    then write and head; exit_depths are all d."""
    w, c = model()
    x = images()
    full = trace(w, c, x)
    assert list(full.stages) == ["patches", "read", "block_0", "block_1", "block_2", "write"]
    assert full.logits.shape == (2, 1, 10)
    np.testing.assert_array_equal(full.exit_depths, [3, 3])
    short = trace(w, c, x, depth=2)
    assert list(short.stages) == ["patches", "read", "block_0", "block_1", "write"]
    for name in ("patches", "read", "block_0", "block_1"):
        np.testing.assert_allclose(short.stages[name], full.stages[name], **SAME)
    np.testing.assert_array_equal(short.exit_depths, [2, 2])
    assert short.exit_depths.dtype == np.int64
    assert np.max(np.abs(short.logits - full.logits)) > 1e-6


def _confidences(w, c, x):
    """(depth, B) max softmax probability of the fixed-depth run at each depth (EXIT-1),
    softmax written out here independently of the oracle."""
    conf = []
    for d in range(1, c["depth"] + 1):
        z = trace(w, c, x, depth=d).logits[:, 0, :]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        conf.append((p / p.sum(axis=1, keepdims=True)).max(axis=1))
    return np.array(conf)


def _expected_exits(conf, tau, policy):
    depth, B = conf.shape
    if policy == "batch_mean":
        hits = [d for d in range(depth) if conf[d].mean() >= tau]
        return np.full(B, hits[0] + 1 if hits else depth)
    return np.array([next((d + 1 for d in range(depth) if conf[d, b] >= tau), depth)
                     for b in range(B)])


@pytest.mark.parametrize("policy", ["batch_mean", "per_sample"])
def test_early_exit_equals_fixed_depth_at_exit_depth(policy):
    """EXIT-1, EXIT-2, EXIT-3, EXIT-4: for thresholds at every observed confidence the exit
    depths follow the policy and each sample's logits equal the fixed-depth run at its depth."""
    w, c = model(num_classes=3)
    x = images(B=4)
    conf = _confidences(w, c, x)
    fixed = {d: trace(w, c, x, depth=d).logits for d in range(1, c["depth"] + 1)}
    levels = np.unique(np.concatenate([conf.ravel(), conf.mean(axis=1), [0.0, 1.0]]))
    taus = (levels[:-1] + levels[1:]) / 2  # midpoints: no tie between oracle and test rounding
    for tau in taus:
        got = trace(w, c, x, depth_tau=tau, exit_policy=policy)
        expected = _expected_exits(conf, tau, policy)
        np.testing.assert_array_equal(got.exit_depths, expected, err_msg=f"tau={tau}")
        for b, d in enumerate(expected):
            np.testing.assert_allclose(got.logits[b], fixed[d][b], rtol=0, atol=TOL)


def test_policies_differ_and_exited_rows_stay_frozen():
    """EXIT-2, EXIT-3: a threshold reached by one sample early but not by the batch mean
    gives different exit depths under the two policies; under per_sample the rows of
    exited samples keep their latents in later block stages."""
    w, c = model(num_classes=3)
    x = images(B=4)
    conf = _confidences(w, c, x)
    tau = float(conf[0].max()) - 1e-9  # only the most confident sample exits at depth 1
    assert conf[0].mean() < tau and np.sum(conf[0] >= tau) == 1
    mean = trace(w, c, x, depth_tau=tau)
    each = trace(w, c, x, depth_tau=tau, exit_policy="per_sample")
    assert not np.array_equal(mean.exit_depths, each.exit_depths)
    first = int(np.argmax(conf[0]))
    assert each.exit_depths[first] == 1
    last = f"block_{int(each.exit_depths.max()) - 1}"
    np.testing.assert_allclose(each.stages[last][first], each.stages["block_0"][first], **SAME)
    running = int(np.argmax(each.exit_depths))
    assert not np.array_equal(each.stages[last][running], each.stages["block_0"][running])


@pytest.mark.parametrize("policy", ["batch_mean", "per_sample"])
def test_tau_zero_exits_after_first_block_and_tau_one_runs_all(policy):
    """EXIT-2, EXIT-3: confidence >= 0 always holds, so tau = 0 stops at depth 1; a
    softmax max below 1 never reaches tau = 1, so every sample runs all blocks."""
    w, c = model()
    x = images(B=3)
    zero = trace(w, c, x, depth_tau=0.0, exit_policy=policy)
    np.testing.assert_array_equal(zero.exit_depths, [1, 1, 1])
    assert list(zero.stages) == ["patches", "read", "block_0", "write"]
    np.testing.assert_allclose(zero.logits, trace(w, c, x, depth=1).logits, **SAME)
    one = trace(w, c, x, depth_tau=1.0, exit_policy=policy)
    np.testing.assert_array_equal(one.exit_depths, [3, 3, 3])
    np.testing.assert_allclose(one.logits, trace(w, c, x).logits, **SAME)


@pytest.mark.parametrize("policy", ["batch_mean", "per_sample"])
def test_confidence_equal_to_tau_exits(policy):
    """EXIT-2, EXIT-3: the test is conf >= tau; with one class the confidence is exactly 1,
    so tau = 1 stops after the first block."""
    w, c = model(num_classes=1)
    result = trace(w, c, images(), depth_tau=1.0, exit_policy=policy)
    np.testing.assert_array_equal(result.exit_depths, [1, 1])


# --------------------------------------------------------------------------- state, shapes


def test_stateless_interleaved_calls():
    """STATE-1: a call's result does not depend on earlier calls (upstream's mask cache
    would reuse [8, 16, 20] for N = 32 after an N = 20 call); inputs are not modified."""
    w, c = model(max_latent_tokens=32, mask_token_grans=[8, 16, 32])
    x = images()
    w_before, x_before = copy.deepcopy(w), x.copy()
    fresh = trace(w, c, x, num_tokens=32)
    trace(w, c, x, num_tokens=20, mat_dim=4, token_grans=[4, 8])
    trace(w, c, x, depth_tau=0.2, exit_policy="per_sample")
    again = trace(w, c, x, num_tokens=32)
    np.testing.assert_allclose(fresh.logits, again.logits, **SAME)
    for name, value in fresh.stages.items():
        np.testing.assert_allclose(value, again.stages[name], **SAME)
    np.testing.assert_array_equal(x, x_before)
    for key, value in w.items():
        np.testing.assert_array_equal(value, w_before[key])


def test_token_grans_argument_overrides_config():
    """MASK-2: token_grans replaces config mask_token_grans for one call."""
    w, c = model()
    x = images()
    explicit = trace(w, c, x, token_grans=[2, 4, 8, 16]).logits
    np.testing.assert_allclose(explicit, trace(w, c, x).logits, **SAME)
    assert np.max(np.abs(trace(w, c, x, token_grans=[5]).logits - explicit)) > 1e-6


@pytest.mark.parametrize("H, W", [(16, 16), (8, 8), (8, 24), (32, 12)])
def test_output_shapes_for_any_image_grid(H, W):
    """OUT-1, PATCH-1, PATCH-2: logits (B, 1, K), stages as documented, for any grid."""
    w, c = model()
    result = trace(w, c, images(B=2, H=H, W=W), num_tokens=5)
    M = (H // 4) * (W // 4)
    assert result.logits.shape == (2, 1, 10)
    assert result.features is None
    assert result.stages["patches"].shape == (2, M, 16)
    assert result.stages["read"].shape == (2, 5, 16)
    assert result.stages["write"].shape == (2, 1, 16)


def test_distill_model():
    """OUT-1, DIST-1, DIST-2, DIST-3: features (B, M, output_feat_dim); the logits path is
    the classification model's (same shared weights give the same logits)."""
    w, c = model("distill", output_feat_dim=12)
    x = images(B=2, H=8, W=12)
    logits, features = distill(w, c, x, num_tokens=6, mat_dim=[4, 16], depth=2)
    assert logits.shape == (2, 1, 10) and features.shape == (2, 6, 12)
    classification = tiny_config()
    shared = {key: value for key, value in w.items()
              if not key.startswith(("output_latents_feat", "write_head_feat",
                                     "output_adapter_feat"))}
    expected = trace(shared, classification, x, num_tokens=6, mat_dim=[4, 16], depth=2).logits
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOL)
    full = trace(w, c, x, num_tokens=6, mat_dim=[4, 16], depth=2)
    np.testing.assert_allclose(full.features, features, **SAME)
    changed = copy.deepcopy(w)
    changed["write_head_feat.cattn.k.weight"] += 0.5
    assert np.max(np.abs(distill(changed, c, x, num_tokens=6)[1]
                         - distill(w, c, x, num_tokens=6)[1])) > 1e-6


@pytest.mark.parametrize("overrides", [
    {"qkv_bias": False, "proj_bias": False},
    {"ls_init_values": 0.0},
    {"ls_init_values": None, "use_output_ffn": True, "use_embed_ffn": False},
])
def test_optional_parameters(overrides):
    """BLOCK-2, HEAD-1, PATCH-3, NUM-3: models without biases, LayerScale or embed FFN and
    with the output FFN run and give finite logits of the documented shape."""
    w, c = model(**overrides)
    result = trace(w, c, images())
    assert result.logits.shape == (2, 1, 10)
    assert np.isfinite(result.logits).all()
