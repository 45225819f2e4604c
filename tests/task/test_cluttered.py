"""The bundled task's generator (``adaperceiver.cluttered``): a counter-based integer
generator (the same canvases on any machine, however they are batched), splits that share
no source digit, and a test set whose bytes match the ones the bundled model was measured on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaperceiver import cluttered
from adaperceiver.digits import CLUTTERED_MODEL, load_digit_counts

MASK = (1 << 64) - 1


def _splitmix64_next(state: int) -> tuple[int, int]:
    """Vigna's SplitMix64 in Python integers: (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def test_splitmix64_matches_the_published_sequence():
    """From state 0 SplitMix64 outputs 0xE220A8397B1DCDAF first (the reference C code's
    value); the vectorised uint64 version gives the Python one's outputs for many states."""
    assert _splitmix64_next(0)[1] == 0xE220A8397B1DCDAF
    states = np.array([0, 1, 2**63, MASK, 0x0123456789ABCDEF], dtype=np.uint64)
    expected = [_splitmix64_next(int(s))[1] for s in states]
    assert [int(v) for v in cluttered._splitmix64(states)] == expected


def test_random_draws_are_counter_based():
    """Word j of canvas i of a seed is SplitMix64(SplitMix64(seed) + i * DRAWS + j), computed
    here with Python integers."""
    seed, indices = 7, np.array([0, 3, 1000])
    base = _splitmix64_next(seed)[1]
    words = cluttered.random_draws(seed, indices)
    for row, i in zip(words, indices, strict=True):
        expected = [_splitmix64_next((base + int(i) * cluttered.DRAWS + j) & MASK)[1]
                    for j in range(cluttered.DRAWS)]
        assert [int(w) for w in row] == expected


def test_below_is_lemires_map():
    words = np.array([0, (1 << 63), MASK, 0x8000_0001_0000_0000], dtype=np.uint64)
    assert cluttered.below(words, 10).tolist() == [0, 5, 9, 5]


def test_canvases_do_not_depend_on_batching():
    pool, labels = load_digit_counts("train")
    whole, y = cluttered.make_canvases(pool, labels, 3, np.arange(10))
    first, y1 = cluttered.make_canvases(pool, labels, 3, np.arange(5))
    second, y2 = cluttered.make_canvases(pool, labels, 3, np.arange(5, 10))
    np.testing.assert_array_equal(whole, np.concatenate([first, second]))
    np.testing.assert_array_equal(y, np.concatenate([y1, y2]))
    other, _ = cluttered.make_canvases(pool, labels, 4, np.arange(10))
    assert not np.array_equal(whole, other)


def test_canvases_are_made_only_from_their_pool():
    """A pool of 12 flat digits, digit k inked k + 1 everywhere: every canvas holds only
    those ink values, the label is the digit's, and the digit is whole and on top (its
    16 x 16 square of ink k + 1 or more, by the maximum composite, at a multiple of STRIDE)."""
    pool = np.broadcast_to(np.arange(1, 13, dtype=np.uint8)[:, None, None], (12, 8, 8)).copy()
    pool_labels = np.arange(12) % 10
    digit_of = np.arange(40) % 12
    canvases, y = cluttered.make_canvases(pool, pool_labels, 11, np.arange(40), digit_of)
    assert set(np.unique(canvases)) <= set(range(13))
    np.testing.assert_array_equal(y, pool_labels[digit_of])
    side, stride = cluttered.DIGIT, cluttered.STRIDE
    for canvas, k in zip(canvases, digit_of, strict=True):
        found = [(r, c) for r in range(0, cluttered.CANVAS - side + 1, stride)
                 for c in range(0, cluttered.CANVAS - side + 1, stride)
                 if (canvas[r:r + side, c:c + side] >= k + 1).all()]
        assert found, k


def test_the_test_set_uses_test_digits_only_and_cycles_them():
    """Canvas i of the test set shows test digit i mod 359: the labels cycle the test split's
    labels, and the train split's digits are not in its pool (the fixed split of digits.py)."""
    _, labels = load_digit_counts("test")
    x, y = cluttered.test_set()
    assert x.shape == (cluttered.TEST_CANVASES, 1, cluttered.CANVAS, cluttered.CANVAS)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y, labels[np.arange(cluttered.TEST_CANVASES) % len(labels)])
    test_pool = {d.tobytes() for d in load_digit_counts("test")[0]}
    train_pool = {d.tobytes() for d in load_digit_counts("train")[0]}
    assert not test_pool & train_pool


def test_the_test_set_is_the_one_the_bundled_model_was_measured_on():
    """The sha256 of the regenerated test canvases equals the one recorded by ``train`` on
    the machine that trained the bundled model: the generator gives the same bytes here."""
    meta = json.loads((CLUTTERED_MODEL / "adaperceiver.json").read_text())
    recorded = meta["data"]["test"]
    assert recorded["seed"] == cluttered.TEST_SEED
    assert cluttered.fingerprint(*cluttered.test_canvases()) == recorded["sha256"]


def test_training_refuses_the_test_seed():
    with pytest.raises(ValueError, match=f"seed {cluttered.TEST_SEED} is the test set's"):
        cluttered.TrainStream(cluttered.TEST_SEED, 8)
