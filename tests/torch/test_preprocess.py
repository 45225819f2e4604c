"""Image preprocessing (spec/preprocessing.md): hand-computed cases for both implementations
(NumPy oracle, torch), and the two against each other on random and smooth images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaperceiver import preprocess as tp
from adaperceiver.digits import DIGITS_FILE, load_digits
from reference_numpy import preprocess as npp


def _both_resize(image: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return npp.resize(image, h, w), tp.resize_uint8(torch.from_numpy(image), (h, w)).numpy()


def test_resize_downsample_hand_computed():
    """PRE-1: 4 -> 2 samples, s = r = 2: output 0 reads inputs 0..2 with weights 3/7, 3/7, 1/7
    (500 / 7 -> 71), output 1 reads 1..3 with 1/7, 3/7, 3/7 (1465 / 7 -> 209)."""
    image = np.array([[[0, 100, 200, 255]]], dtype=np.uint8)  # (1, 1, 4)
    for result in _both_resize(image, 1, 2):
        assert result.tolist() == [[[71, 209]]]


def test_resize_upsample_hand_computed():
    """PRE-1: 2 -> 4 samples, s = 0.5, r = 1: centres 0.25, 0.75, 1.25, 1.75 give weights
    (1), (0.75, 0.25), (0.25, 0.75), (1) -> 0, 63.75, 191.25, 255 rounded."""
    image = np.array([[[0], [255]]], dtype=np.uint8)  # (1, 2, 1): the height pass
    for result in _both_resize(image, 4, 1):
        assert result[0, :, 0].tolist() == [0, 64, 191, 255]


@pytest.mark.parametrize("hw, resized", [((300, 400), (256, 341)), ((500, 333), (384, 256)),
                                         ((224, 224), (256, 256))])
def test_resize_shorter_side_truncates_the_long_side(hw, resized):
    """PRE-1: shorter side 256, longer side int(256 * long / short)."""
    image = torch.zeros((3, *hw), dtype=torch.uint8)
    assert tuple(tp.resize_shorter(image, 256).shape[1:]) == resized


@pytest.mark.parametrize("h, top", [(341, 58), (343, 60), (225, 0), (226, 1), (256, 16)])
def test_center_crop_rounds_half_to_even(h, top):
    """PRE-2: top = int(round((h - 224) / 2)): 58.5 -> 58, 59.5 -> 60, 0.5 -> 0."""
    rows = torch.arange(h).view(1, h, 1).expand(1, h, 230)
    assert int(tp.center_crop(rows, 224)[0, 0, 0]) == top


def test_imagenet_normalisation_of_constant_images():
    """PRE-3: a constant image v gives (v / 255 - mean) / std in every channel, both sides."""
    for v in (0, 128, 255):
        image = np.full((3, 300, 260), v, dtype=np.uint8)
        expected = (v / 255 - np.array(npp.CLIP_MEAN)) / np.array(npp.CLIP_STD)
        for x in (npp.imagenet_eval(image), tp.imagenet_eval(torch.from_numpy(image)).numpy()):
            assert x.shape == (3, 224, 224)
            np.testing.assert_allclose(x, np.broadcast_to(expected[:, None, None], x.shape),
                                       rtol=1e-6, atol=1e-6)


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like RGB image: low-frequency colour gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [128 + 100 * np.sin(3 * xx + 2 * c) * np.cos(4 * yy - c) for c in range(3)]
    image = np.stack(channels) + rng.normal(0, 8, (3, h, w))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("hw, seed", [((300, 400), 0), ((500, 333), 1), ((120, 90), 2),
                                      ((1000, 257), 3), ((256, 256), 4)])
def test_imagenet_oracle_and_torch_agree(hw, seed):
    """PRE-1..3: oracle and torch agree within one uint8 step (1/255 before normalisation),
    on noise and on photo-like images."""
    for image in (_smooth_image(*hw, seed),
                  np.random.default_rng(seed).integers(0, 256, (3, *hw), dtype=np.uint8)):
        a = npp.imagenet_eval(image)
        b = tp.imagenet_eval(torch.from_numpy(image)).double().numpy()
        steps = np.abs(a - b) * np.array(npp.CLIP_STD)[:, None, None] * 255
        assert steps.max() <= 1 + 1e-4


def test_imagenet_rejects_grey_images():
    """The ImageNet transform needs 3 channels; a grey image is an error, not a broadcast."""
    grey = np.zeros((1, 300, 300), dtype=np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        tp.imagenet_eval(torch.from_numpy(grey))
    with pytest.raises(ValueError, match="RGB"):
        npp.imagenet_eval(grey)


def test_digit_arrays_are_counts_over_16():
    """PRE-4: the bundled arrays become count / 16 (load_digits and the oracle's helper)."""
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        counts, test = data["images"], data["test"]
    images, _ = load_digits("test")
    np.testing.assert_allclose(images[:, 0], npp.digit_counts(counts[test]), rtol=0, atol=1e-7)
    assert images.max() == 1.0 and images.min() == 0.0


def test_digit_image_hand_computed():
    """PRE-5: a black 16 x 4 bar on white: inverted, cropped to 16 x 4, padded to 16 x 16 at
    columns 6..9, resized 16 -> 8 (columns 2..5 read 1/8, 7/8, 7/8, 1/8 of ink: 32, 223, 223,
    32), divided by the maximum 223."""
    canvas = np.full((1, 30, 30), 255, dtype=np.uint8)
    canvas[0, 5:21, 10:14] = 0
    row = np.array([0, 0, 32, 223, 223, 32, 0, 0]) / 223
    expected = np.broadcast_to(row, (1, 8, 8))
    for x in (npp.digits_image(canvas), tp.digits_image(torch.from_numpy(canvas)).numpy()):
        np.testing.assert_allclose(x, expected, rtol=0, atol=1e-6)


def test_digit_image_polarity_and_blank():
    """PRE-5: white ink on black gives the same input as black ink on white; a blank image
    stays zero."""
    canvas = np.full((1, 40, 30), 255, dtype=np.uint8)
    canvas[0, 8:30, 6:20] = 0
    canvas[0, 12:26, 10:16] = 255
    for impl in (npp.digits_image, lambda a: tp.digits_image(torch.from_numpy(a)).numpy()):
        np.testing.assert_allclose(impl(canvas), impl(255 - canvas), atol=1e-6)
        assert np.all(impl(np.zeros((1, 9, 9), dtype=np.uint8)) == 0)


@pytest.mark.parametrize("seed", range(4))
def test_digit_image_oracle_and_torch_agree(seed):
    """PRE-5 on random dark rectangles: the two implementations agree."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 200, 2)
    canvas = np.full((1, h, w), 250, dtype=np.uint8)
    for _ in range(5):
        r, c = rng.integers(0, h - 5), rng.integers(0, w - 5)
        canvas[0, r:r + rng.integers(3, h // 2), c:c + rng.integers(3, w // 2)] = 10
    a = npp.digits_image(canvas)
    b = tp.digits_image(torch.from_numpy(canvas)).double().numpy()
    assert a.shape == b.shape == (1, 8, 8)
    np.testing.assert_allclose(a, b, rtol=0, atol=0.02)  # one uint8 step over a peak >= 50


def test_digit_canvas_hand_computed():
    """PRE-7: the PRE-5 bar digit (columns 2..5 read 32, 223, 223, 32 over 223) upscaled 2x
    is 16 x 16 with columns 4..11 inked, placed at offset (40 - 16) // 2 = 12 of a 40 x 40
    zero canvas: canvas columns 16..23, rows 12..27; nothing else is inked."""
    drawn = np.full((1, 30, 30), 255, dtype=np.uint8)
    drawn[0, 5:21, 10:14] = 0
    row = np.repeat(np.array([0, 0, 32, 223, 223, 32, 0, 0]) / 223, 2)  # (16,)
    expected = np.zeros((1, 40, 40))
    expected[0, 12:28, 12:28] = row
    for x in (npp.digit_canvas(drawn, 40, 2),
              tp.digit_canvas(torch.from_numpy(drawn), 40, 2).numpy()):
        np.testing.assert_allclose(x, expected, rtol=0, atol=1e-6)


def test_digit_canvas_oracle_and_torch_agree_and_refuse_a_small_canvas():
    """PRE-7: both implementations agree on a random drawing; 8 x scale > canvas is an error."""
    rng = np.random.default_rng(7)
    drawn = np.where(rng.random((1, 50, 37)) < 0.3, 0, 255).astype(np.uint8)
    a = npp.digit_canvas(drawn, 40, 2)
    b = tp.digit_canvas(torch.from_numpy(drawn), 40, 2).double().numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=0.02)
    with pytest.raises(ValueError, match="must fit the canvas"):
        npp.digit_canvas(drawn, 12, 2)
    with pytest.raises(ValueError, match="must fit the canvas"):
        tp.digit_canvas(torch.from_numpy(drawn), 12, 2)
