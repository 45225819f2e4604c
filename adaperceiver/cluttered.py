"""Cluttered translated digits: the bundled task on which compute budgets differ.

In the style of the cluttered-MNIST benchmark of Mnih et al. 2014 ("Recurrent Models of
Visual Attention"), made from the vendored UCI digits (``adaperceiver/digits.py``): each
canvas is a ``CANVAS`` x ``CANVAS`` grid of ink counts 0..16 holding one digit, upscaled 2x
to 16 x 16 and placed at a random position, and ``FRAGMENTS`` clutter fragments, each a
random ``FRAGMENT`` x ``FRAGMENT`` window cut from another digit of the same split and
placed at a random position. Pieces are composited by the maximum ink count, the digit
last. A model must find the digit among the clutter, so a few latent tokens or one block
are not enough.

Everything is integer arithmetic on a counter-based generator (SplitMix64 over
``(seed, canvas index, draw)``), so canvas i of a seed is the same on every machine and
NumPy version, and independent of how canvases are batched:

- test set: ``TEST_CANVASES`` canvases from the test split only, canvas i holding test
  digit i mod 359 (each test digit 10 times), seed ``TEST_SEED``;
- training: canvases drawn on the fly from the train split, any seed but ``TEST_SEED``.

The splits share no source digit (digits.py's fixed split), neither as the digit nor as
clutter. This module does not import torch.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .digits import MAX_COUNT, load_digit_counts

CANVAS = 40  # canvas side, pixels
SCALE = 2  # each 8 x 8 digit is upscaled to 16 x 16 by repeating pixels
DIGIT = 8 * SCALE
STRIDE = 4  # the digit's offsets are multiples of STRIDE
FRAGMENT = 8  # side of a clutter fragment cut from an upscaled digit
FRAGMENTS = 8  # clutter fragments per canvas
TEST_SEED = 2014
TEST_CANVASES = 3590  # 10 canvases per test digit
DRAWS = 4 + 5 * FRAGMENTS  # words per canvas: digit, row, column, a spare; 5 per fragment

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function of the counters x (uint64, wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_draws(seed: int, indices: np.ndarray) -> np.ndarray:
    """(n, DRAWS) uint64 random words of canvases ``indices`` (n,) of ``seed``: word j of
    canvas i is SplitMix64(SplitMix64(seed) + i * DRAWS + j)."""
    base = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    counters = indices.astype(np.uint64)[:, None] * np.uint64(DRAWS) + np.arange(
        DRAWS, dtype=np.uint64)  # (n, DRAWS)
    return _splitmix64(base + counters)


def below(words: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Integers in 0..n-1 from random words: (high 32 bits * n) >> 32 (Lemire's map)."""
    return (((words >> np.uint64(32)) * np.asarray(n, dtype=np.uint64)) >> np.uint64(32)
            ).astype(np.int64)


def upscale(counts: np.ndarray) -> np.ndarray:
    """(n, 8, 8) -> (n, 16, 16): every pixel repeated SCALE x SCALE times."""
    return counts.repeat(SCALE, axis=1).repeat(SCALE, axis=2)


def _paste(canvas: np.ndarray, piece: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
    """canvas[b, top_b + i, left_b + j] = max(canvas[...], piece[b, i, j]) for every b."""
    n, h, w = piece.shape
    rows = top[:, None, None] + np.arange(h)[None, :, None]  # (n, h, 1)
    cols = left[:, None, None] + np.arange(w)[None, None, :]  # (n, 1, w)
    b = np.arange(n)[:, None, None]
    canvas[b, rows, cols] = np.maximum(canvas[b, rows, cols], piece)


def make_canvases(pool: np.ndarray, pool_labels: np.ndarray, seed: int,
                  indices: np.ndarray, digit_of: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Canvases ``indices`` of ``seed`` from the digits ``pool`` (P, 8, 8) ink counts.

    ``digit_of`` (n,) names the pool digit of each canvas (the test set's fixed cycle);
    None draws it. Returns (canvases (n, CANVAS, CANVAS) uint8 ink counts, labels (n,))."""
    P = len(pool)
    words = random_draws(seed, indices)  # (n, DRAWS)
    digit = below(words[:, 0], P) if digit_of is None else digit_of
    big = upscale(pool)  # (P, 16, 16)
    n = len(indices)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    room = CANVAS - FRAGMENT + 1
    for k in range(FRAGMENTS):
        w = words[:, 4 + 5 * k: 9 + 5 * k]  # (n, 5): source, window row/col, canvas row/col
        source = (digit + 1 + below(w[:, 0], P - 1)) % P  # another digit of the pool
        r, c = below(w[:, 1], DIGIT - FRAGMENT + 1), below(w[:, 2], DIGIT - FRAGMENT + 1)
        rows = r[:, None, None] + np.arange(FRAGMENT)[None, :, None]  # (n, F, 1)
        cols = c[:, None, None] + np.arange(FRAGMENT)[None, None, :]  # (n, 1, F)
        piece = big[source[:, None, None], rows, cols]  # (n, F, F)
        _paste(canvas, piece, below(w[:, 3], room), below(w[:, 4], room))
    places = (CANVAS - DIGIT) // STRIDE + 1  # digit offsets 0, STRIDE, .., CANVAS - DIGIT
    _paste(canvas, big[digit], STRIDE * below(words[:, 1], places),
           STRIDE * below(words[:, 2], places))
    return canvas, pool_labels[digit].astype(np.int64)


def to_input(canvases: np.ndarray) -> np.ndarray:
    """Ink counts (n, S, S) -> model input (n, 1, S, S) float32, count / 16 (PRE-4)."""
    return canvases[:, None].astype(np.float32) / MAX_COUNT  # (n, S, S) -> (n, 1, S, S)


def test_canvases() -> tuple[np.ndarray, np.ndarray]:
    """The fixed test set: (TEST_CANVASES, CANVAS, CANVAS) uint8 ink counts and labels."""
    pool, labels = load_digit_counts("test")
    indices = np.arange(TEST_CANVASES)
    return make_canvases(pool, labels, TEST_SEED, indices, indices % len(pool))


def test_set() -> tuple[np.ndarray, np.ndarray]:
    """The fixed test set as model inputs (TEST_CANVASES, 1, CANVAS, CANVAS) and labels."""
    canvases, labels = test_canvases()
    return to_input(canvases), labels


def fingerprint(canvases: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the canvases' bytes (uint8, C order) followed by the labels' (int64 LE)."""
    digest = hashlib.sha256(np.ascontiguousarray(canvases, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


class TrainStream:
    """Training canvases drawn on the fly from the train split: batch k of a run with
    ``seed`` holds canvases k * batch_size .. (k + 1) * batch_size - 1 of that seed."""

    def __init__(self, seed: int, batch_size: int):
        if seed == TEST_SEED:
            raise ValueError(f"seed {TEST_SEED} is the test set's; choose another seed")
        self.seed, self.batch_size = seed, batch_size
        self.pool, self.labels = load_digit_counts("train")

    def batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        indices = np.arange(k * self.batch_size, (k + 1) * self.batch_size)
        canvases, y = make_canvases(self.pool, self.labels, self.seed, indices)
        return to_input(canvases), y
