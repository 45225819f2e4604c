"""Family 7: image preprocessing, an optional capability (PRE-1, PRE-2, PRE-3, PRE-5).

A port that ships preprocessing declares ``Capabilities(preprocessing={"imagenet",
"digits"})`` and implements ``preprocess(kind, image, size)``; its output is compared
with the oracle's (``reference_numpy.preprocess``) on seeded random uint8 images. The
spec allows one uint8 rounding step of difference inside the resize (spec
preprocessing.md: the implementations agree within 1/255 per value before
normalisation), so the comparison is made on that scale: ``imagenet`` outputs are mapped
back by the CLIP std (PRE-3), ``digits`` images carry a solid 255 ink block so that both
sides divide by 255 (PRE-5). A port declaring no preprocessing skips these tests, and
the report lists PRE-1..3 and PRE-5 as not exercised with that reason.
"""

from __future__ import annotations

import numpy as np
import pytest

STEP = 1 / 255 + 1e-6  # one uint8 rounding step, plus float32 arithmetic

# (id, image (C, H, W), S): downscaled landscape and portrait, upscaled, odd crop offsets
IMAGENET_CASES = [("landscape-37x50-to-32", (3, 37, 50), 32),
                  ("portrait-300x225-to-224", (3, 300, 225), 224),
                  ("upscale-20x13-to-16", (3, 20, 13), 16),
                  ("square-64-to-56", (3, 64, 64), 56)]
# (id, image (1, H, W), light background)
DIGIT_CASES = [("dark-40x28", (1, 40, 28), False), ("light-23x31", (1, 23, 31), True),
               ("dark-9x9", (1, 9, 9), False)]


def _require(port, kind: str) -> None:
    if kind not in port.capabilities.preprocessing:
        pytest.skip(f"port has no {kind!r} preprocessing (capabilities.preprocessing); "
                    "preprocessing is an optional capability")


def _image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _digit(shape: tuple[int, ...], light: bool, seed: int) -> np.ndarray:
    """Faint noise (< 128) around a solid 255 ink block and a thinner stroke."""
    _, H, W = shape
    v = np.random.default_rng(seed).integers(0, 100, size=shape, dtype=np.uint8)
    v[0, H // 4: 3 * H // 4, W // 3: 2 * W // 3] = 255
    v[0, H // 5, W // 5: 4 * W // 5] = 200
    return (255 - v) if light else v


@pytest.mark.clauses("PRE-1", "PRE-2", "PRE-3")
@pytest.mark.parametrize(("shape", "size"),
                         [pytest.param(*case[1:], id=case[0]) for case in IMAGENET_CASES])
def test_imagenet_preprocessing(port, shape, size):
    """PRE-1, PRE-2, PRE-3: the ImageNet evaluation transform of a random uint8 image
    (shorter side to round(S * 256 / 224), centre crop S, v / 255, CLIP normalisation)
    equals the oracle's within one uint8 step before normalisation."""
    from reference_numpy.preprocess import CLIP_STD, imagenet_eval

    _require(port, "imagenet")
    image = _image(shape, seed=size)
    expected = imagenet_eval(image, size)
    actual = np.asarray(port.preprocess("imagenet", image.copy(), size), dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"PRE-1, PRE-2: preprocess('imagenet', {shape} image, {size}) must return shape "
        f"{expected.shape}, got {actual.shape}")
    error = float(np.abs((actual - expected) * CLIP_STD[:, None, None]).max())
    assert error <= STEP, (
        f"PRE-1, PRE-2, PRE-3: preprocess('imagenet', {shape} image, {size}) differs from the "
        f"oracle by {error * 255:.3g} uint8 steps before normalisation (allowed: 1)")


@pytest.mark.clauses("PRE-5")
@pytest.mark.parametrize(("shape", "light"),
                         [pytest.param(*case[1:], id=case[0]) for case in DIGIT_CASES])
def test_digit_preprocessing(port, shape, light):
    """PRE-5: a grey digit image (polarity, crop to the ink box, centred square pad, PRE-1
    resize to 8 x 8, divide by the maximum) equals the oracle's within one uint8 step."""
    from reference_numpy.preprocess import digits_image

    _require(port, "digits")
    image = _digit(shape, light, seed=shape[1])
    expected = digits_image(image)
    actual = np.asarray(port.preprocess("digits", image.copy(), 8), dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"PRE-5: preprocess('digits', {shape} image, 8) must return shape {expected.shape}, "
        f"got {actual.shape}")
    error = float(np.abs(actual - expected).max())
    assert error <= STEP, (
        f"PRE-5: preprocess('digits', {shape} image) differs from the oracle by "
        f"{error * 255:.3g} uint8 steps of the brightest cell (allowed: 1)")
