"""One test per deliberate divergence from the upstream code (spec/divergences.md, rows 1-14).

Each test shows the upstream quirk cannot happen here: the call that upstream
silently misreads is rejected, or the result that upstream makes depend on hidden
state depends only on the call.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_helpers import checkpoint, images, rel_err, run, tiny_config

import reference_numpy as rn
from adaperceiver import (
    AdaPerceiverOutput,
    CheckpointError,
    ClassificationAdaPerceiver,
    DistillAdaPerceiver,
)

CONFIG = tiny_config(mask_token_grans=[8, 16, 32], max_latent_tokens=32)


@pytest.fixture(scope="module")
def loaded():
    with checkpoint(CONFIG, seed=7) as (path, weights):
        return ClassificationAdaPerceiver.from_pretrained(path).double(), weights


@pytest.fixture
def x():
    return torch.from_numpy(images(2, CONFIG, seed=3)).double()


def test_1_no_stateful_mask_cache(loaded, x):
    """Divergence 1 (STATE-1, MASK-2): N = 20 then N = 32 equals a fresh N = 32 call (upstream
    would mask the second call with [8, 16, 20, 32]); it matches the oracle's stateless N = 32."""
    model, weights = loaded
    with torch.inference_mode():
        model(x, num_tokens=20)
        after = model(x, num_tokens=32).logits
    fresh = ClassificationAdaPerceiver(**CONFIG).double()
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(after, fresh(x, num_tokens=32).logits, rtol=1e-12, atol=1e-12)
    ref = rn.classify(weights, CONFIG, x.numpy(), num_tokens=32)
    assert rel_err(after, ref) <= 1e-10
    quirk = rn.classify(weights, CONFIG, x.numpy(), num_tokens=32, token_grans=[8, 16, 20, 32])
    assert rel_err(after, quirk) > 1e-6  # the upstream result would really differ


@pytest.mark.parametrize("depth", [0, -1, 4, 100])
def test_2_depth_out_of_range_is_an_error(loaded, x, depth):
    """Divergence 2 (ARG-3): depth 0, negative or above the model depth is a ValueError
    (upstream silently runs all blocks)."""
    with pytest.raises(ValueError, match=r"^depth must be an int in 1\.\.3"):
        loaded[0](x, depth=depth)


@pytest.mark.parametrize("mat_dim", [0, -8, 17, [4], [4, 4, 4]])
def test_3_mat_dim_is_never_clamped(loaded, x, mat_dim):
    """Divergence 3 (ARG-2): 0, negative, > embed_dim or a list of the wrong length is a
    ValueError (upstream: full width, slicing from the end, or a deep failure)."""
    with pytest.raises(ValueError, match="^mat_dim must be"):
        loaded[0](x, mat_dim=mat_dim)


@pytest.mark.parametrize("num_tokens, error", [(0, ValueError), (-2, ValueError),
                                               (8.0, TypeError), ("8", TypeError)])
def test_4_num_tokens_is_checked(loaded, x, num_tokens, error):
    """Divergence 4 (ARG-1): num_tokens 0 is an error, not the default; non-ints are TypeErrors."""
    with pytest.raises(error, match="^num_tokens must be an int >= 1"):
        loaded[0](x, num_tokens=num_tokens)


def test_5_depth_with_depth_tau_and_tau_range(loaded, x):
    """Divergence 5 (ARG-4): depth together with depth_tau is a ValueError (upstream ignores
    depth); depth_tau outside [0, 1] is a ValueError."""
    with pytest.raises(ValueError, match="^depth_tau cannot be combined with depth"):
        loaded[0](x, depth=2, depth_tau=0.5)
    for tau in (-0.5, 1.01, float("inf")):
        with pytest.raises(ValueError, match=r"^depth_tau must be a real number in \[0, 1\]"):
            loaded[0](x, depth_tau=tau)


@pytest.mark.parametrize("grans", [[16, 8], [8, 8, 16], [], [0, 8]])
def test_6_token_grans_are_checked(loaded, x, grans):
    """Divergence 6 (ARG-5): unsorted, repeated, empty or non-positive token_grans are a
    ValueError (upstream builds an OR of block masks or asserts)."""
    with pytest.raises(ValueError, match="^token_grans must be"):
        loaded[0](x, token_grans=grans)


def test_7_per_sample_exit_is_independent_of_the_batch(loaded, x):
    """Divergence 7 (EXIT-2, EXIT-3, ARG-6): under batch_mean a sample's exit depth depends on
    its batch-mates (upstream's rule, kept as default); under per_sample it does not."""
    model, _ = loaded
    with torch.inference_mode():
        conf = torch.stack([model(x, depth=d).logits.softmax(-1).amax(-1)[:, 0]
                            for d in (1, 2, 3)])  # (depth, B)
    tau = float(conf[0].max() + conf[0].min()) / 2  # between the two samples after block 1
    assert conf[0].max() >= tau > conf[0].min()
    with torch.inference_mode():
        alone = [model(x[b:b + 1], depth_tau=tau, exit_policy="per_sample").exit_depths.item()
                 for b in range(2)]
        together = model(x, depth_tau=tau, exit_policy="per_sample").exit_depths.tolist()
        mean_alone = [model(x[b:b + 1], depth_tau=tau).exit_depths.item() for b in range(2)]
        mean_together = model(x, depth_tau=tau).exit_depths.tolist()
    assert together == alone
    assert mean_together[0] == mean_together[1]
    assert mean_alone != mean_together  # batch_mean couples the samples, as upstream


def test_8_output_object_reports_exit_depths(loaded, x):
    """Divergence 8 (OUT-1, EXIT-4): results come as AdaPerceiverOutput with logits (B, 1, C),
    exit_depths (B,) int64 and features (distill) instead of a bare tensor / tuple."""
    out = run(loaded[0], x.numpy(), depth=2)
    assert isinstance(out, AdaPerceiverOutput)
    assert out.logits.shape == (2, 1, CONFIG["num_classes"])
    assert out.exit_depths.dtype == torch.int64 and out.exit_depths.tolist() == [2, 2]
    assert out.features is None and out.stages is None
    distill = DistillAdaPerceiver(**tiny_config("distill"))
    feats = run(distill, images(2, distill.config), torch.float32).features
    assert feats.shape == (2, 16, 12)


@pytest.mark.parametrize("shape", [(2, 3, 18, 16), (2, 1, 16, 16), (3, 16, 16)])
def test_9_bad_images_are_value_errors(loaded, shape):
    """Divergence 9 (ARG-7): wrong spatial size, channel count or rank is a ValueError naming
    the shape (upstream: an AssertionError or a convolution error); NaN is rejected."""
    with pytest.raises(ValueError, match=r"^x must be .* got shape"):
        loaded[0](torch.zeros(shape, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        loaded[0](torch.full((1, 3, 16, 16), float("nan"), dtype=torch.float64))


def test_10_unknown_keywords_are_type_errors(loaded, x):
    """Divergence 10 (ARG-8, ARG-4, DIST-3): a misspelt keyword, or depth_tau for the distill
    model, is a TypeError (upstream swallows **kwargs)."""
    with pytest.raises(TypeError, match="num_token"):
        loaded[0](x, num_token=8)
    distill = DistillAdaPerceiver(**tiny_config("distill"))
    with pytest.raises(TypeError, match="depth_tau"):
        distill(x.float(), depth_tau=0.5)


def test_11_errors_name_argument_value_and_allowed(loaded, x):
    """Divergence 11 (ARG-8): TypeError for a wrong type, ValueError for a wrong value, the
    message starting with the argument name and showing value and allowed values."""
    with pytest.raises(ValueError) as err:
        loaded[0](x, mat_dim=99)
    assert str(err.value) == ("mat_dim must be an int in 1..16 (embed_dim) or a list of 2 such "
                              "ints (one per image), got 99")
    with pytest.raises(TypeError) as err:
        loaded[0](x, exit_policy=3)
    assert str(err.value).startswith("exit_policy must be one of ['batch_mean', 'per_sample']")


def test_12_loading_is_strict(tmp_path):
    """Divergence 12 (CKPT-5): a missing tensor is an error listing it (upstream loads
    non-strictly and keeps the random initialisation)."""
    config = tiny_config()
    with checkpoint(config) as (path, _):
        from safetensors.torch import load_file, save_file

        state = load_file(str(path / "model.safetensors"))
    del state["blocks.2.ffn.fc2.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing tensor 'blocks.2.ffn.fc2.bias'"):
        ClassificationAdaPerceiver.from_pretrained(tmp_path)


def test_13_pickle_weights_are_never_read(tmp_path):
    """Divergence 13 (CKPT-6): with only pytorch_model.bin (a pickle) present, loading fails
    with a clear error instead of unpickling (upstream falls back to it)."""
    config = tiny_config()
    model = ClassificationAdaPerceiver(**config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        ClassificationAdaPerceiver.from_pretrained(tmp_path)


# (Python call arguments, the same values as NumPy scalars): every call argument
NUMPY_CALLS = [
    ({"num_tokens": 20}, {"num_tokens": np.int64(20)}),
    ({"num_tokens": 8}, {"num_tokens": np.int32(8)}),
    ({"mat_dim": 6}, {"mat_dim": np.int64(6)}),
    ({"mat_dim": [4, 16]}, {"mat_dim": [np.int64(4), np.int64(16)]}),
    ({"depth": 2}, {"depth": np.int64(2)}),
    ({"num_tokens": 20, "token_grans": [4, 12]},
     {"num_tokens": np.int64(20), "token_grans": [np.int64(4), np.int64(12)]}),
    ({"depth_tau": 0.5, "exit_policy": "per_sample"},
     {"depth_tau": np.float64(0.5), "exit_policy": np.str_("per_sample")}),
]


@pytest.mark.parametrize(("python", "numpy_args"), NUMPY_CALLS)
def test_14_numpy_scalar_arguments(loaded, x, python, numpy_args):
    """Divergence 14 (ARG-1, ARG-2, ARG-3, ARG-4, ARG-5, ARG-6): NumPy scalars are accepted for
    every call argument with flex attention and the block mask (upstream's flex block-mask
    construction crashes on a NumPy integer num_tokens) and give the Python values' result."""
    reference = run(loaded[0], x.numpy(), **python)
    out = run(loaded[0], x.numpy(), **numpy_args)
    assert rel_err(out.logits, reference.logits.numpy()) <= 1e-12
    assert out.exit_depths.tolist() == reference.exit_depths.tolist()
