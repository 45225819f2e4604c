"""Every rejected call argument (ARG-1..8): same exception type and message as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_helpers import checkpoint, images, tiny_config

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver, DistillAdaPerceiver

CONFIG = tiny_config()  # D = 16, depth 3, in_channels 3, patch 4, img 16
B = 2

BAD_ARGUMENTS = [
    # (keyword arguments, exception type, start of the message) -- ARG-1..6
    ({"num_tokens": 0}, ValueError, "num_tokens must be an int >= 1, got 0"),
    ({"num_tokens": -3}, ValueError, "num_tokens must be"),
    ({"num_tokens": 4.0}, TypeError, "num_tokens must be"),
    ({"num_tokens": True}, TypeError, "num_tokens must be"),
    ({"num_tokens": "8"}, TypeError, "num_tokens must be"),
    ({"mat_dim": 0}, ValueError, "mat_dim must be"),
    ({"mat_dim": 17}, ValueError, "mat_dim must be"),
    ({"mat_dim": -4}, ValueError, "mat_dim must be"),
    ({"mat_dim": 8.0}, TypeError, "mat_dim must be"),
    ({"mat_dim": False}, TypeError, "mat_dim must be"),
    ({"mat_dim": [4]}, ValueError, "mat_dim must be"),
    ({"mat_dim": [4, 8, 16]}, ValueError, "mat_dim must be"),
    ({"mat_dim": [4, 8.5]}, TypeError, "mat_dim must be"),
    ({"mat_dim": [4, 0]}, ValueError, "mat_dim must be"),
    ({"mat_dim": "16"}, TypeError, "mat_dim must be"),
    ({"depth": 0}, ValueError, "depth must be an int in 1..3"),
    ({"depth": 4}, ValueError, "depth must be"),
    ({"depth": -1}, ValueError, "depth must be"),
    ({"depth": 2.0}, TypeError, "depth must be"),
    ({"depth": True}, TypeError, "depth must be"),
    ({"depth_tau": 1.5}, ValueError, "depth_tau must be a real number in [0, 1]"),
    ({"depth_tau": -0.1}, ValueError, "depth_tau must be"),
    ({"depth_tau": float("nan")}, ValueError, "depth_tau must be"),
    ({"depth_tau": "0.5"}, TypeError, "depth_tau must be"),
    ({"depth_tau": True}, TypeError, "depth_tau must be"),
    ({"depth_tau": 0.5, "depth": 2}, ValueError, "depth_tau cannot be combined with depth"),
    ({"token_grans": []}, ValueError, "token_grans must be"),
    ({"token_grans": [4, 2]}, ValueError, "token_grans must be"),
    ({"token_grans": [2, 2]}, ValueError, "token_grans must be"),
    ({"token_grans": [0, 2]}, ValueError, "token_grans must be"),
    ({"token_grans": [2.0]}, TypeError, "token_grans must be"),
    ({"token_grans": 4}, TypeError, "token_grans must be"),
    ({"token_grans": "24"}, TypeError, "token_grans must be"),
    ({"exit_policy": "per_batch"}, ValueError, "exit_policy must be one of"),
    ({"exit_policy": None}, TypeError, "exit_policy must be one of"),
]


@pytest.fixture(scope="module")
def loaded():
    with checkpoint(CONFIG) as (path, weights):
        return ClassificationAdaPerceiver.from_pretrained(path), weights


@pytest.mark.parametrize("kwargs, error, start", BAD_ARGUMENTS)
def test_bad_argument_matches_the_oracle(loaded, kwargs, error, start):
    """ARG-1..6, ARG-8: TypeError for a wrong type, ValueError for a wrong value; the message
    starts with the argument name and is word for word the oracle's."""
    model, weights = loaded
    x = images(B, CONFIG)
    with pytest.raises(error) as ours:
        model(torch.from_numpy(x).float(), **kwargs)
    with pytest.raises(error) as oracle:
        rn.classify(weights, CONFIG, x, **kwargs)
    assert str(ours.value).startswith(start)
    assert str(ours.value) == str(oracle.value)


@pytest.mark.parametrize("good", [{"num_tokens": np.int64(5)}, {"mat_dim": np.int32(4)},
                                  {"mat_dim": (4, np.int64(16))}, {"mat_dim": np.array([3, 9])},
                                  {"depth": np.int16(2)}, {"token_grans": (1, 3)},
                                  {"depth_tau": np.float32(0.5)}, {"depth_tau": 1}])
def test_numpy_integers_and_sequences_are_accepted(loaded, good):
    """ARG-1..5: NumPy integer scalars are ints; tuples and 1-D arrays are sequences."""
    model, _ = loaded
    out = model(torch.from_numpy(images(B, CONFIG)).float(), **good)
    assert out.logits.shape == (B, 1, CONFIG["num_classes"])


BAD_IMAGES = [
    (torch.zeros(3, 16, 16), ValueError, "got shape (3, 16, 16)"),
    (torch.zeros(0, 3, 16, 16), ValueError, "got shape (0, 3, 16, 16)"),
    (torch.zeros(1, 1, 16, 16), ValueError, "got shape (1, 1, 16, 16)"),
    (torch.zeros(1, 3, 18, 16), ValueError, "got shape (1, 3, 18, 16)"),
    (torch.zeros(1, 3, 16, 6), ValueError, "got shape (1, 3, 16, 6)"),
    (torch.zeros(1, 3, 0, 16), ValueError, "got shape (1, 3, 0, 16)"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.bool), TypeError, "got dtype torch.bool"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.complex64), TypeError, "got dtype torch.complex64"),
    (torch.full((1, 3, 16, 16), float("nan")), ValueError, "non-finite"),
    (torch.full((1, 3, 16, 16), float("inf")), ValueError, "non-finite"),
    (np.zeros((1, 3, 16, 16)), TypeError, "got ndarray"),
]


@pytest.mark.parametrize("x, error, detail", BAD_IMAGES)
def test_bad_images_are_rejected(loaded, x, error, detail):
    """ARG-7, ARG-8: images must be a finite floating (B, C, H, W) tensor with B >= 1,
    C == in_channels and H, W positive multiples of patch_size."""
    model, _ = loaded
    with pytest.raises(error) as err:
        model(x)
    assert str(err.value).startswith("x must be") and detail in str(err.value)


def test_images_of_another_multiple_of_the_patch_size_are_accepted(loaded):
    """ARG-7, PATCH-2: any H, W multiples of patch_size run (pos_embed is resampled)."""
    model, _ = loaded
    assert model(torch.zeros(1, 3, 8, 20)).logits.shape == (1, 1, CONFIG["num_classes"])


def test_integer_images_are_converted_as_by_the_oracle(loaded):
    """ARG-7: integer images are real images, converted to the model's dtype (as the oracle
    converts integer arrays to float64)."""
    model, weights = loaded
    x = np.random.default_rng(0).integers(-3, 4, size=(2, 3, 16, 16))
    with torch.inference_mode():
        out = model.double()(torch.from_numpy(x)).logits
    model.float()
    ref = rn.classify(weights, CONFIG, x)
    assert np.abs(out.numpy() - ref).max() / np.abs(ref).max() <= 1e-10


def test_unknown_keywords_are_type_errors(loaded):
    """ARG-8, ARG-4, DIST-3: no catch-all keywords; the distill model has no depth_tau or
    exit_policy."""
    model, _ = loaded
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(TypeError, match="num_token"):
        model(x, num_token=4)
    distill = DistillAdaPerceiver(**tiny_config("distill"))
    for keyword in ("depth_tau", "exit_policy"):
        with pytest.raises(TypeError, match=keyword):
            distill(x, **{keyword: 0.5})
