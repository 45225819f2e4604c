"""Inputs of the commands: image files (Pillow) and ``.npy`` arrays (never unpickled, header
checked before anything is allocated); ``sweep``'s labelled folders are in ``dataset``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..preprocess import preprocess
from .checkpoint import Loaded
from .common import CliError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _regular_file(path: Path, flag: str) -> None:
    if not path.exists():
        raise CliError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise CliError(f"{flag} {path}: not a regular file")


def load_npy(path: Path, flag: str = "IMAGE") -> np.ndarray:
    """A float array (B, C, H, W) or (C, H, W) from a .npy file, read without pickle. The
    header is checked against the file size before the data is read, so a header claiming
    a huge shape is refused instead of allocated."""
    _regular_file(path, flag)
    size = path.stat().st_size
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, SyntaxError, EOFError) as err:
            raise CliError(f"{flag} {path}: not a readable .npy file ({err})") from None
        if dtype.kind != "f":
            raise CliError(f"{flag} {path}: .npy input must hold floats (preprocessed images, "
                           f"float16/32/64), got dtype {dtype}")
        if len(shape) not in (3, 4) or 0 in shape:
            raise CliError(f"{flag} {path}: .npy input must have shape (B, C, H, W) or "
                           f"(C, H, W) with no empty axis, got {shape}")
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if claimed != size - f.tell():
            raise CliError(f"{flag} {path}: the header claims shape {shape} ({claimed} bytes) "
                           f"but the file holds {size - f.tell()} bytes of data")
        data = np.fromfile(f, dtype=dtype, count=claimed // dtype.itemsize)
    array = data.reshape(shape, order="F" if fortran else "C")
    if not np.isfinite(array).all():
        raise CliError(f"{flag} {path}: values must be finite, got NaN or inf")
    if np.abs(array).max() > FLOAT32_MAX:
        raise CliError(f"{flag} {path}: values must be within the float32 range "
                       f"(|v| <= {FLOAT32_MAX:.3g}), got {np.abs(array).max():.3g}")
    return array[None] if array.ndim == 3 else array


def decode_image(path: Path, channels: int, flag: str = "IMAGE") -> Tensor:
    """An image file decoded with Pillow to uint8 (channels, H, W): RGB for 3 channels, grey
    for 1; transparency is composited onto white."""
    _regular_file(path, flag)
    if channels not in (1, 3):
        raise CliError(f"{flag} {path}: image files need a checkpoint with 1 or 3 input "
                       f"channels, this one has {channels}; give a .npy array instead")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            pixels = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise CliError(f"{flag} {path}: not a readable image ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise CliError(f"{flag} {path}: cannot decode the image ({err})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    chw = pixels.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(chw))


def load_inputs(paths: Sequence[str], loaded: Loaded) -> tuple[list[str], Tensor]:
    """Names and the batch (B, C, H, W) float32 of image files (preprocessed as the checkpoint
    says) and .npy files (taken as already preprocessed)."""
    c = loaded.model.config
    names, images = [], []
    for text in paths:
        path = Path(text)
        if path.suffix.lower() == ".npy":
            array = load_npy(path)
            names += [f"{path.name}[{i}]" for i in range(len(array))]
            images += list(torch.from_numpy(array.astype(np.float32)))
        else:
            names.append(path.name)
            images.append(preprocess(decode_image(path, c["in_channels"]), loaded.preprocessing,
                                     c["img_size"]))
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise CliError(f"the inputs have different shapes {sorted(shapes)}; give .npy arrays of "
                       "one shape (image files are all preprocessed to the same size)")
    return names, torch.stack(images)
