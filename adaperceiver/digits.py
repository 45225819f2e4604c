"""The bundled UCI handwritten digits and the bundled models (the cluttered-digits model the
commands run by default, ``CLUTTERED_MODEL``, and the 8 x 8 digits model kept as a
conformance golden checkpoint, ``DIGITS_MODEL``).

``adaperceiver/data/digits.npz`` holds the 1,797 8x8 grey digits that scikit-learn ships
as ``load_digits`` (the test part of the UCI "Optical Recognition of Handwritten Digits"
data set: E. Alpaydin and C. Kaynak, 1998, https://doi.org/10.24432/C50P49, licensed
CC BY 4.0; see ``adaperceiver/data/README.md``). Arrays: ``images`` (1797, 8, 8) uint8 ink
counts 0..16, ``labels`` (1797,) uint8 digits 0..9, ``test`` (1797,) bool.

Split (fixed, stored in the file): per class, round(20%) of its samples drawn with
``numpy.random.default_rng(0).choice(..., replace=False)`` in class order 0..9 form the
test split (359 images); the other 1,438 are the train split.

This module does not import torch, so the oracle side and the docs can use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"
DIGITS_FILE = DATA_DIR / "digits.npz"
DIGITS_MODEL = DATA_DIR / "digits-model"  # the 8 x 8 digits model (a conformance golden)
CLUTTERED_MODEL = DATA_DIR / "cluttered-model"  # the cluttered-digits model
BUNDLED_MODEL = CLUTTERED_MODEL  # what the commands run by default
DIGIT_NAMES = tuple(str(d) for d in range(10))
SPLITS = ("train", "test", "all")
MAX_COUNT = 16  # a pixel is the number of inked cells of a 4x4 block of the 32x32 bitmap


def load_digit_counts(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(ink counts (n, 8, 8) uint8 in 0..16, labels (n,) uint8) of ``split`` ("train",
    "test" or "all")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        counts, labels, test = data["images"], data["labels"], data["test"]
    keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    return counts[keep], labels[keep]


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 1, 8, 8) float32, labels (n,) int64) of ``split`` ("train", "test" or
    "all"); images are the model input of PRE-4: ink count / 16, in [0, 1]."""
    counts, labels = load_digit_counts(split)
    images = counts[:, None].astype(np.float32) / MAX_COUNT  # (n, 8, 8) -> (n, 1, 8, 8)
    return images, labels.astype(np.int64)
