"""The bundled data and model: the UCI digits with their fixed split, and the trained
checkpoint (published layout, < 1 MB) that both implementations load and that classifies
the held-out digits at every budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import reference_numpy as oracle
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.digits import DIGITS_FILE, DIGITS_MODEL, load_digits


def test_digits_split_is_fixed_disjoint_and_stratified():
    """1,797 digits: 1,438 train and 359 test, every class in both, no image in both."""
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    x_all, _ = load_digits("all")
    assert (len(x_train), len(x_test), len(x_all)) == (1438, 359, 1797)
    assert x_test.shape[1:] == (1, 8, 8) and x_test.dtype == np.float32
    assert set(np.bincount(y_test)) <= {35, 36, 37} and len(np.bincount(y_train)) == 10
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        assert int(data["test"].sum()) == 359


def test_load_digits_names_the_bad_split():
    with pytest.raises(ValueError, match="split must be one of train, test, all, got 'val'"):
        load_digits("val")


# Class distribution of the UCI optdigits test part (optdigits.names, "Class Distribution"),
# the 1,797 images scikit-learn ships as load_digits.
UCI_TEST_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_are_the_uci_test_part():
    """The vendored file holds the UCI digits' test part (PRE-4): its published class
    distribution, and ink counts 0..16 (cells of a 4x4 block) on 8x8 grids."""
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        counts, labels = data["images"], data["labels"]
    assert counts.shape == (1797, 8, 8) and counts.dtype == np.uint8
    assert np.bincount(labels).tolist() == UCI_TEST_CLASS_COUNTS
    assert counts.min() == 0 and counts.max() == 16
    images, _ = load_digits("all")
    np.testing.assert_array_equal(images[:, 0] * 16, counts)


def test_bundled_checkpoint_layout():
    """config.json holds exactly the constructor keys (CKPT-2), the weights are < 1 MB, and the
    metadata names the labels, the preprocessing, the split and the training command."""
    config = json.loads((DIGITS_MODEL / "config.json").read_text())
    published = oracle.default_config(embed_dim=8, num_heads=2, depth=1, mask_token_grans=[1],
                                      mat_dims=[8])
    assert set(config) == set(published)
    assert (DIGITS_MODEL / "model.safetensors").stat().st_size < 1_000_000
    meta = json.loads((DIGITS_MODEL / "adaperceiver.json").read_text())
    assert meta["labels"] == [str(d) for d in range(10)]
    assert meta["preprocessing"] == {"kind": "digits"}
    assert meta["training"]["command"].startswith("adaperceiver train --out ")


@pytest.fixture(scope="module")
def loaded():
    model = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL)
    config, weights = oracle.load_checkpoint(DIGITS_MODEL)
    return model, config, weights


def test_both_implementations_load_it_and_agree(loaded):
    """from_pretrained and the oracle's loader read the same weights; logits on real test
    digits agree (TOL-1 float32 scale) and so do the predictions (OUT-1, PRE-4)."""
    model, config, weights = loaded
    x, _ = load_digits("test")
    x = x[:32]
    expected = oracle.classify(weights, config, x.astype(np.float64), num_tokens=8, mat_dim=48)
    with torch.inference_mode():
        got = model(torch.from_numpy(x), num_tokens=8, mat_dim=48).logits.double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_accuracy_at_every_budget_is_at_least_94_percent(loaded):
    """Measured with the oracle's anytime grid (ANY-1) on the 359 held-out digits: every
    (tokens, depth, width) configuration classifies >= 94% correctly; the metadata's
    recorded accuracies match the measurement (within one image: float32 vs float64)."""
    _, config, weights = loaded
    x, y = load_digits("test")
    meta = json.loads((DIGITS_MODEL / "adaperceiver.json").read_text())
    measured = {}
    for m in config["mat_dims"]:
        grid = oracle.anytime(weights, config, x.astype(np.float64), mat_dim=m)
        correct = (grid.logits.argmax(-1) == y[:, None, None]).mean(0)  # (K, G)
        for li in range(config["depth"]):
            for gi, g in enumerate(grid.granularities):
                measured[f"N={g} depth={li + 1} width={m}"] = float(correct[li, gi])
    assert len(measured) == 36
    assert min(measured.values()) >= 0.94, sorted(measured.items(), key=lambda kv: kv[1])[:3]
    for key, value in meta["test_accuracy"]["grid"].items():
        assert abs(value - measured[key]) <= 1 / 359 + 1e-9, key
