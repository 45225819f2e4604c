"""Image preprocessing in torch (spec/preprocessing.md, PRE-1..7).

Images come in as uint8 tensors (C, H, W): RGB for 3-channel checkpoints, grey for
1-channel ones. ``preprocess(image, spec, img_size)`` applies a checkpoint's named
preprocessing ("imagenet", "digits" or "digit-canvas") and returns float32 (C, S, S).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DIGIT_SIZE = 8
KINDS = ("imagenet", "digits", "digit-canvas")


def resize_uint8(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(C, H, W) uint8 -> (C, h, w) uint8: antialiased bilinear, width then height pass, each
    rounded to uint8 (PRE-1); torch's uint8 kernel is the Pillow-style separable filter."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image.unsqueeze(0), size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0]  # (1, C, h, w) -> (C, h, w)


def resize_shorter(image: Tensor, short: int) -> Tensor:
    """Shorter side -> ``short``, longer side int(short * long / shorter) (PRE-1)."""
    h, w = image.shape[-2:]
    if h <= w:
        return resize_uint8(image, (short, int(short * w / h)))
    return resize_uint8(image, (int(short * h / w), short))


def center_crop(image: Tensor, size: int) -> Tensor:
    """(C, h, w) -> (C, size, size) at top = int(round((h - size) / 2)), left alike (PRE-2)."""
    h, w = image.shape[-2:]
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
    return image[:, top:top + size, left:left + size]


def imagenet_eval(image: Tensor, img_size: int = 224) -> Tensor:
    """The published evaluation transform: resize the shorter side to round(S * 256 / 224),
    center crop S, v / 255, CLIP mean/std (PRE-1..3). (3, H, W) uint8 -> (3, S, S) float32."""
    if image.shape[0] != 3:
        raise ValueError(f"the imagenet preprocessing needs an RGB image (3, H, W), got shape "
                         f"{tuple(image.shape)}")
    resized = resize_shorter(image, round(img_size * 256 / 224))
    x = center_crop(resized, img_size).to(torch.float32) / 255
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


def digits_image(image: Tensor) -> Tensor:
    """A handwritten digit (1, H, W) uint8 -> (1, 8, 8) float32 in [0, 1] (PRE-5): bright ink,
    crop to the ink's box, pad to a centred square, resize to 8 x 8, divide by the maximum."""
    grey = image[0]
    border = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]]).to(torch.float64)
    if border.mean() > 127.5:
        grey = 255 - grey
    rows, cols = (grey >= 128).any(1).nonzero()[:, 0], (grey >= 128).any(0).nonzero()[:, 0]
    if rows.numel():
        grey = grey[int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]
    h, w = grey.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = F.pad(grey, (left, side - w - left, top, side - h - top))  # (side, side)
    small = resize_uint8(square.unsqueeze(0), (DIGIT_SIZE, DIGIT_SIZE)).to(torch.float32)
    peak = small.max()
    return small / peak if peak > 0 else small


def digit_canvas(image: Tensor, canvas: int, scale: int) -> Tensor:
    """A handwritten digit (1, H, W) uint8 -> (1, canvas, canvas) float32 (PRE-7): PRE-5's
    8 x 8 digit, every pixel repeated scale x scale times, at offset (canvas - 8 scale) // 2
    of both axes of a zero canvas."""
    digit = digits_image(image)[0].repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    side = DIGIT_SIZE * scale
    if not 0 < side <= canvas:
        raise ValueError(f"preprocessing digit-canvas: the digit (8 x scale = {side}) must fit "
                         f"the canvas ({canvas})")
    top = (canvas - side) // 2
    out = torch.zeros(1, canvas, canvas)
    out[0, top:top + side, top:top + side] = digit
    return out


def describe(spec: Mapping[str, Any], img_size: int) -> str:
    """What an image file becomes under ``spec``, in one sentence for users."""
    kind = spec.get("kind")
    if kind == "imagenet":
        return (f"any RGB photo: shorter side resized to {round(img_size * 256 / 224)}, centre "
                f"crop {img_size} x {img_size}, CLIP normalisation (PRE-1..3)")
    digit = ("one handwritten digit per image, any size, dark on light or light on dark (the "
             "border decides), cropped to its ink and reduced to 8 x 8 (PRE-5)")
    if kind == "digit-canvas":
        side = DIGIT_SIZE * int(spec["scale"])
        return (f"{digit}, then upscaled to {side} x {side} and centred on a {img_size} x "
                f"{img_size} canvas without clutter (PRE-7)")
    return digit


def preprocess(image: Tensor, spec: Mapping[str, Any], img_size: int) -> Tensor:
    """Apply the checkpoint's preprocessing ``spec``: {"kind": "imagenet"}, {"kind": "digits"}
    or {"kind": "digit-canvas", "scale": s} (the canvas is img_size)."""
    kind = spec.get("kind")
    if kind == "imagenet":
        return imagenet_eval(image, img_size)
    if kind == "digits":
        return digits_image(image)
    if kind == "digit-canvas":
        return digit_canvas(image, img_size, int(spec["scale"]))
    raise ValueError(f"preprocessing kind must be one of {', '.join(KINDS)}, got {kind!r}")
