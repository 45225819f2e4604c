"""Call-argument validation of the oracle (ARG-1, ARG-2, ARG-3, ARG-4, ARG-5, ARG-6, ARG-7, ARG-8).

Every rejected value raises TypeError (wrong type) or ValueError (wrong value) whose
message starts with the argument name and shows the value (ARG-8).
"""

import math

import numpy as np
import pytest

from reference_numpy import classify, default_config, distill, random_weights, trace

TINY = {
    "embed_dim": 8,
    "num_heads": 2,
    "depth": 2,
    "max_latent_tokens": 8,
    "ffn_ratio": 2.0,
    "mask_token_grans": [2, 4, 8],
    "mat_dims": [4, 8],
    "img_size": 8,
    "patch_size": 4,
    "num_classes": 3,
}
CONFIG = default_config(**TINY)
WEIGHTS = random_weights(CONFIG)
DISTILL = default_config("distill", **TINY, output_feat_dim=5)
DISTILL_WEIGHTS = random_weights(DISTILL)
X = np.random.default_rng(0).standard_normal((2, 3, 8, 8))


def call(**kwargs):
    return trace(WEIGHTS, CONFIG, X, **kwargs)


def _rejects(error, name, shown, **kwargs):
    """The call raises ``error`` whose message starts with ``name`` and contains ``shown``."""
    with pytest.raises(error, match=f"^{name}") as info:
        call(**kwargs)
    assert shown in str(info.value)


@pytest.mark.parametrize("value, error, shown", [
    (0, ValueError, "got 0"),
    (-3, ValueError, "got -3"),
    (2.0, TypeError, "2.0"),
    (True, TypeError, "True"),
    ("4", TypeError, "'4'"),
    ([4], TypeError, "[4]"),
])
def test_num_tokens_rejected(value, error, shown):
    """ARG-1, ARG-8: num_tokens must be an int >= 1 (0 is an error, not the default)."""
    _rejects(error, "num_tokens", shown, num_tokens=value)


def test_num_tokens_message_says_what_is_allowed():
    """ARG-8: "num_tokens must be an int >= 1, got 0"."""
    with pytest.raises(ValueError, match=r"^num_tokens must be an int >= 1, got 0$"):
        call(num_tokens=0)


@pytest.mark.parametrize("value, error, shown", [
    (0, ValueError, "0"),
    (9, ValueError, "9"),
    (-1, ValueError, "-1"),
    (2.5, TypeError, "2.5"),
    (True, TypeError, "True"),
    ("8", TypeError, "'8'"),
    ([4], ValueError, "[4]"),
    ([4, 8, 8], ValueError, "[4, 8, 8]"),
    ([4, 0], ValueError, "[4, 0]"),
    ([4, 9], ValueError, "[4, 9]"),
    ([4, 2.0], TypeError, "[4, 2.0]"),
    ([4, True], TypeError, "[4, True]"),
    ({4, 8}, TypeError, "set"),
    (np.array([[4, 8]]), TypeError, "ndarray"),
])
def test_mat_dim_rejected(value, error, shown):
    """ARG-2, ARG-8: mat_dim is an int in 1..embed_dim or a list of B such ints."""
    _rejects(error, "mat_dim", shown, mat_dim=value)


@pytest.mark.parametrize("value, error, shown", [
    (0, ValueError, "got 0"),
    (-1, ValueError, "got -1"),
    (3, ValueError, "got 3"),
    (1.0, TypeError, "1.0"),
    (True, TypeError, "True"),
    ("2", TypeError, "'2'"),
])
def test_depth_rejected(value, error, shown):
    """ARG-3, ARG-8: depth is an int in 1..config depth (no silent 'run all')."""
    _rejects(error, "depth", shown, depth=value)


@pytest.mark.parametrize("value, error, shown", [
    (-0.1, ValueError, "-0.1"),
    (1.5, ValueError, "1.5"),
    (2, ValueError, "2"),
    (math.nan, ValueError, "nan"),
    (math.inf, ValueError, "inf"),
    ("0.5", TypeError, "'0.5'"),
    (True, TypeError, "True"),
    (0.5j, TypeError, "0.5j"),
])
def test_depth_tau_rejected(value, error, shown):
    """ARG-4, ARG-8: depth_tau is a real number in [0, 1]."""
    _rejects(error, "depth_tau", shown, depth_tau=value)


def test_depth_and_depth_tau_together_rejected():
    """ARG-4: giving both is an error (upstream silently ignores depth)."""
    _rejects(ValueError, "depth_tau", "depth=1", depth=1, depth_tau=0.5)


def test_depth_tau_rejected_for_distill():
    """ARG-4, DIST-3: the distill model has no confidence exit: depth_tau is a TypeError in
    every API, trace's shared signature included (spec 0.2.1)."""
    with pytest.raises(TypeError, match="^depth_tau"):
        trace(DISTILL_WEIGHTS, DISTILL, X, depth_tau=0.5)
    with pytest.raises(TypeError, match="depth_tau"):
        distill(DISTILL_WEIGHTS, DISTILL, X, depth_tau=0.5)


@pytest.mark.parametrize("value, error, shown", [
    ([], ValueError, "[]"),
    ([4, 4], ValueError, "[4, 4]"),
    ([8, 4], ValueError, "[8, 4]"),
    ([0, 4], ValueError, "[0, 4]"),
    ([-2], ValueError, "[-2]"),
    ([2.0], TypeError, "[2.0]"),
    ([True, 4], TypeError, "[True, 4]"),
    ("24", TypeError, "'24'"),
    (4, TypeError, "4"),
])
def test_token_grans_rejected(value, error, shown):
    """ARG-5, ARG-8: token_grans is a non-empty strictly increasing list of positive ints."""
    _rejects(error, "token_grans", shown, token_grans=value)


@pytest.mark.parametrize("value, error, shown", [
    ("max", ValueError, "'max'"),
    ("Batch_Mean", ValueError, "'Batch_Mean'"),
    (None, TypeError, "None"),
    (1, TypeError, "1"),
])
def test_exit_policy_rejected(value, error, shown):
    """ARG-6, ARG-8: exit_policy is "batch_mean" or "per_sample"."""
    _rejects(error, "exit_policy", shown, exit_policy=value)


@pytest.mark.parametrize("images, error, shown", [
    (X.tolist(), TypeError, "list"),
    (X[0], ValueError, "(3, 8, 8)"),
    (X[None], ValueError, "(1, 2, 3, 8, 8)"),
    (np.zeros((0, 3, 8, 8)), ValueError, "(0, 3, 8, 8)"),
    (np.zeros((1, 1, 8, 8)), ValueError, "(1, 1, 8, 8)"),
    (np.zeros((1, 3, 8, 6)), ValueError, "(1, 3, 8, 6)"),
    (np.zeros((1, 3, 10, 8)), ValueError, "(1, 3, 10, 8)"),
    (np.zeros((1, 3, 0, 8)), ValueError, "(1, 3, 0, 8)"),
    (np.full((1, 3, 8, 8), np.nan), ValueError, "NaN"),
    (np.full((1, 3, 8, 8), -np.inf), ValueError, "inf"),
    (np.zeros((1, 3, 8, 8), dtype=bool), TypeError, "bool"),
    (np.zeros((1, 3, 8, 8), dtype=complex), TypeError, "complex"),
    (np.array([[[["a"] * 8] * 8] * 3]), TypeError, "<U1"),
])
def test_images_rejected(images, error, shown):
    """ARG-7, ARG-8: images are a finite real (B, C, H, W) array, B >= 1, C == in_channels,
    H and W positive multiples of patch_size."""
    with pytest.raises(error, match="^images") as info:
        trace(WEIGHTS, CONFIG, images)
    assert shown in str(info.value)


def test_weights_rejected():
    """ARG-8, CKPT-3, CKPT-5: weights must be a mapping with the config's keys and shapes and
    finite values; every problem is named."""
    with pytest.raises(TypeError, match="^weights"):
        trace(list(WEIGHTS.items()), CONFIG, X)
    broken = dict(WEIGHTS)
    broken["blocks.0.attn.q.weight"] = np.full((8, 8), np.nan)
    del broken["write_head.cattn.v.bias"]
    broken["extra"] = np.zeros(1)
    broken["blocks.1.ffn.fc1.weight"] = np.zeros((15, 8))
    with pytest.raises(ValueError, match="^weights") as info:
        trace(broken, CONFIG, X)
    message = str(info.value)
    for key in ("blocks.0.attn.q.weight", "write_head.cattn.v.bias", "extra",
                "blocks.1.ffn.fc1.weight"):
        assert key in message


@pytest.mark.parametrize("kwargs", [
    {"num_tokens": np.int64(5)},
    {"num_tokens": 100},
    {"mat_dim": np.int32(4)},
    {"mat_dim": [1, np.int64(8)]},
    {"mat_dim": np.array([4, 8])},
    {"mat_dim": (8, 4)},
    {"depth": np.int16(2)},
    {"depth_tau": 0},
    {"depth_tau": 1},
    {"depth_tau": np.float32(0.5)},
    {"token_grans": (3,)},
    {"token_grans": np.array([1, 5, 9])},
    {"exit_policy": "per_sample"},
])
def test_valid_arguments_accepted(kwargs):
    """ARG-1, ARG-2, ARG-3, ARG-4, ARG-5, ARG-6: NumPy integer and float scalars, tuples and
    1-D arrays are accepted; num_tokens above max_latent_tokens is valid (NTK scaling)."""
    assert call(**kwargs).logits.shape == (2, 1, 3)


def test_integer_images_accepted_and_classify_forwards_arguments():
    """ARG-7, OUT-1: integer images are real; classify validates like trace."""
    ints = np.arange(2 * 3 * 8 * 8).reshape(2, 3, 8, 8) % 7
    assert classify(WEIGHTS, CONFIG, ints).shape == (2, 1, 3)
    with pytest.raises(ValueError, match="^num_tokens"):
        classify(WEIGHTS, CONFIG, X, num_tokens=0)


@pytest.mark.parametrize(("python", "numpy_args"), [
    ({"num_tokens": 6}, {"num_tokens": np.int64(6)}),
    ({"num_tokens": 12}, {"num_tokens": np.int32(12)}),
    ({"mat_dim": 4}, {"mat_dim": np.int64(4)}),
    ({"mat_dim": [1, 8]}, {"mat_dim": [np.int64(1), np.int64(8)]}),
    ({"depth": 1}, {"depth": np.int64(1)}),
    ({"num_tokens": 6, "token_grans": [2, 5]},
     {"num_tokens": np.int64(6), "token_grans": [np.int64(2), np.int64(5)]}),
    ({"depth_tau": 0.5, "exit_policy": "per_sample"},
     {"depth_tau": np.float64(0.5), "exit_policy": np.str_("per_sample")}),
])
def test_numpy_scalars_give_the_python_result(python, numpy_args):
    """Divergence 14 (ARG-1, ARG-2, ARG-3, ARG-4, ARG-5, ARG-6): NumPy scalars for every call
    argument, with flex attention and the block mask, give the same result as Python values
    (upstream's flex block-mask construction crashes on a NumPy integer num_tokens)."""
    reference, typed = call(**python), call(**numpy_args)
    np.testing.assert_allclose(typed.logits, reference.logits, rtol=1e-12, atol=0)
    assert typed.exit_depths.tolist() == reference.exit_depths.tolist()
