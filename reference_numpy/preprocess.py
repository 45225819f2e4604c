"""Image preprocessing in NumPy float64 (spec/preprocessing.md, PRE-1..7).

Written from the spec, independently of ``adaperceiver.preprocess``. Images are uint8
arrays (C_in, H_img, W_img); results are float64 (C_in, img_size, img_size).
"""

from __future__ import annotations

import numpy as np

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def _pass_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of one antialiased triangle-filter pass (PRE-1)."""
    s = n_in / n_out
    r = max(s, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        c = s * (i + 0.5)
        lo, hi = max(int(c - r + 0.5), 0), min(int(c + r + 0.5), n_in)
        j = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((j + 0.5 - c) / r))
        weights[i, lo:hi] = w / w.sum()
    return weights


def _round_uint8(v: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(v + 0.5), 0, 255)


def resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """(C_in, H_img, W_img) uint8 -> (C_in, h, w) uint8: width pass, then height pass, each
    rounded (PRE-1)."""
    out = image.astype(np.float64)
    if out.shape[2] != w:
        out = _round_uint8(out @ _pass_weights(out.shape[2], w).T)  # (C, H, W) -> (C, H, w)
    if out.shape[1] != h:
        out = _round_uint8(np.einsum("oh,chw->cow", _pass_weights(out.shape[1], h), out))
    return out.astype(np.uint8)


def imagenet_eval(image: np.ndarray, img_size: int = 224) -> np.ndarray:
    """PRE-1..3: shorter side to R = round(S * 256 / 224) (long side truncated), center crop S,
    v / 255, CLIP normalisation. (3, H_img, W_img) uint8 -> (3, img_size, img_size) float64."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be an RGB array (3, H, W), got shape {image.shape}")
    R, S = round(img_size * 256 / 224), img_size
    H, W = image.shape[1:]
    h, w = (R, int(R * W / H)) if H <= W else (int(R * H / W), R)
    resized = resize(image, h, w)
    top, left = int(round((h - S) / 2)), int(round((w - S) / 2))
    crop = resized[:, top:top + S, left:left + S].astype(np.float64) / 255
    return (crop - CLIP_MEAN[:, None, None]) / CLIP_STD[:, None, None]


def digit_counts(counts: np.ndarray) -> np.ndarray:
    """PRE-4: bundled ink counts 0..16 -> count / 16."""
    return np.asarray(counts, dtype=np.float64) / 16


def digits_image(image: np.ndarray) -> np.ndarray:
    """PRE-5: grey digit (1, H_img, W_img) uint8 -> (1, 8, 8) float64 in [0, 1]."""
    v = image[0].astype(np.int64)
    border = np.concatenate([v[0], v[-1], v[:, 0], v[:, -1]])
    if border.mean() > 127.5:
        v = 255 - v
    ink_rows, ink_cols = np.flatnonzero((v >= 128).any(1)), np.flatnonzero((v >= 128).any(0))
    if ink_rows.size:
        v = v[ink_rows[0]:ink_rows[-1] + 1, ink_cols[0]:ink_cols[-1] + 1]
    h, w = v.shape
    side = max(h, w)
    square = np.zeros((1, side, side), dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[0, top:top + h, left:left + w] = v
    small = resize(square, 8, 8).astype(np.float64)
    return small / small.max() if small.max() > 0 else small


def digit_canvas(image: np.ndarray, canvas: int, scale: int) -> np.ndarray:
    """PRE-7: grey digit (1, H_img, W_img) uint8 -> (1, canvas, canvas) float64: the PRE-5 digit
    upscaled by pixel repetition, centred at offset (canvas - 8 * scale) // 2."""
    digit = np.kron(digits_image(image)[0], np.ones((scale, scale)))  # (8s, 8s)
    side = digit.shape[0]
    if not 0 < side <= canvas:
        raise ValueError(f"PRE-7: the digit (8 x scale = {side}) must fit the canvas ({canvas})")
    top = (canvas - side) // 2
    out = np.zeros((1, canvas, canvas))
    out[0, top:top + side, top:top + side] = digit
    return out
