"""Inputs of the commands: image files (Pillow) and ``.npy`` arrays (never unpickled, header
checked before anything is allocated); ``sweep``'s labelled folders are in ``dataset``."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
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
CHECK_CHUNK = 4096  # .npy images whose values are checked at a time
# PRE-6: the Pillow modes whose convert("RGB") / convert("L") the published decode defines
DECODED_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I;16",
                 "I;16L", "I;16B", "I;16N")


def _regular_file(path: Path, flag: str) -> None:
    if not path.exists():
        raise CliError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise CliError(f"{flag} {path}: not a regular file")


def load_npy(path: Path, flag: str = "IMAGE") -> np.ndarray:
    """A read-only float array (B, C, H, W) mapped from a .npy file of (B, C, H, W) or
    (C, H, W), never unpickled. The header is checked against the file size, so a header
    claiming a huge shape is refused; the values are checked chunk by chunk and read into
    memory only when used (``np.memmap``)."""
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
        offset = f.tell()
    array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                      order="F" if fortran else "C")
    array = array[None] if array.ndim == 3 else array
    for start in range(0, len(array), CHECK_CHUNK):  # bounded memory for a large file
        chunk = np.asarray(array[start:start + CHECK_CHUNK])
        if not np.isfinite(chunk).all():
            raise CliError(f"{flag} {path}: values must be finite, got NaN or inf")
        if np.abs(chunk).max() > FLOAT32_MAX:
            raise CliError(f"{flag} {path}: values must be within the float32 range "
                           f"(|v| <= {FLOAT32_MAX:.3g}), got {np.abs(chunk).max():.3g}")
    return array


def open_image(path: Path, flag: str = "IMAGE") -> Image.Image:
    """The image file opened with Pillow (header only), in a mode PRE-6 defines."""
    _regular_file(path, flag)
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise CliError(f"{flag} {path}: not a readable image ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise CliError(f"{flag} {path}: cannot decode the image ({err})") from None
    if image.mode not in DECODED_MODES:
        image.close()
        raise CliError(f"{flag} {path}: image mode {image.mode} is not supported (PRE-6 "
                       f"defines {', '.join(DECODED_MODES)}; e.g. a float or 32-bit TIFF "
                       "must be converted to 8-bit first)")
    return image


def decode_image(path: Path, channels: int, flag: str = "IMAGE") -> Tensor:
    """An image file decoded as the published evaluation does (PRE-6): Pillow's
    ``convert("RGB")`` for 3 channels, ``convert("L")`` for 1 (alpha dropped, not
    composited); uint8 (channels, H, W), a writable copy."""
    if channels not in (1, 3):
        raise CliError(f"{flag} {path}: image files need a checkpoint with 1 or 3 input "
                       f"channels, this one has {channels}; give a .npy array instead")
    with open_image(path, flag) as image:
        try:
            pixels = np.array(image.convert("RGB" if channels == 3 else "L"))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise CliError(f"{flag} {path}: cannot decode the image ({err})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]  # (H, W) -> (H, W, 1)
    chw = pixels.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(chw))


class Inputs:
    """The images of ``classify``: image files (checked now, decoded and preprocessed as the
    checkpoint says when their batch is read) and .npy arrays (taken as preprocessed,
    mapped from disk), one ``name`` per image, all of one ``shape`` (C, H, W)."""

    def __init__(self, paths: Sequence[str], loaded: Loaded):
        self.loaded = loaded
        c = loaded.model.config
        self.names: list[str] = []
        self._items: list[tuple[Path, np.ndarray | None, int]] = []  # (file, array, row)
        shapes = set()
        for text in paths:
            path = Path(text)
            if path.suffix.lower() == ".npy":
                array = load_npy(path)
                self.names += [f"{path.name}[{i}]" for i in range(len(array))]
                self._items += [(path, array, i) for i in range(len(array))]
                shapes.add(tuple(array.shape[1:]))
            else:
                open_image(path).close()
                self.names.append(path.name)
                self._items.append((path, None, 0))
                shapes.add((c["in_channels"], c["img_size"], c["img_size"]))
        if len(shapes) > 1:
            raise CliError(f"the inputs have different shapes {sorted(shapes)}; give .npy "
                           "arrays of one shape (image files are all preprocessed to the "
                           "same size)")
        self.shape: tuple[int, ...] = shapes.pop()
        self.has_files = any(array is None for _, array, _ in self._items)  # not only .npy

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, start: int, stop: int) -> Tensor:
        """Images start..stop - 1 as a float32 batch (B, C, H, W)."""
        c = self.loaded.model.config
        chunks = []  # consecutive rows of one array are read as one slice
        for _, run in groupby(self._items[start:stop], key=lambda item: id(item[1])):
            items = list(run)
            array = items[0][1]
            if array is None:
                chunks += [preprocess(decode_image(path, c["in_channels"]),
                                      self.loaded.preprocessing, c["img_size"])[None]
                           for path, _, _ in items]  # (C, S, S) -> (1, C, S, S)
            else:
                rows = slice(items[0][2], items[-1][2] + 1)
                chunks.append(torch.from_numpy(np.array(array[rows], dtype=np.float32)))
        return torch.cat(chunks)
