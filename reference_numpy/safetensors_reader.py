"""Bounded, pickle-free reading of a safetensors file (CKPT-4, CKPT-6, CKPT-7, CKPT-8).

The file is never read whole. ``read_header`` reads the 8-byte little-endian header
length n, checks n against the file size and the format's 100 MB cap, reads those n
bytes and parses the JSON header (duplicate keys are an error), then checks every
entry's dtype, shape and data offsets and that the entries tile the data buffer.
``read_tensor`` then seeks to one entry's bytes and decodes them exactly to float64.
All work is linear in the header size (plus the bytes of the tensors read).
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .bfloat16 import bfloat16_bits_to_float32

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's limit on the JSON header (CKPT-7)

# safetensors dtype tag -> little-endian storage dtype (BF16: bit patterns, see bfloat16.py)
STORAGE_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}


@dataclass(frozen=True)
class Entry:
    """One readable header entry: dtype tag, shape and byte span in the data buffer."""

    tag: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class Header:
    """A parsed header. ``shapes`` holds every tensor key (None: unreadable entry),
    ``entries`` the entries with a supported dtype and a valid span, ``data_start``
    the file offset of the data buffer."""

    shapes: dict[str, tuple[int, ...] | None]
    entries: dict[str, Entry]
    data_start: int


def open_regular(path: Path) -> tuple[BinaryIO | None, str | None]:
    """(binary file, None) for a regular file (symlinks followed), else (None, problem).

    Opened non-blocking first, so a FIFO is never waited on (CKPT-8).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None, f"missing {path.name} in {path.parent}"
    except OSError as err:
        return None, f"{path.name} in {path.parent} cannot be opened: {err.strerror or err}"
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        return None, f"{path.name} in {path.parent} is not a regular file"
    return os.fdopen(fd, "rb"), None


def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object_pairs_hook: a JSON object with a repeated key is an error (CKPT-8).

    Linear in the number of keys."""
    result: dict[str, Any] = {}
    duplicates = set()
    for key, value in pairs:
        if key in result:
            duplicates.add(key)
        result[key] = value
    if duplicates:
        shown = sorted(duplicates)[:5]
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise ValueError(f"duplicate keys {shown}{more}")
    return result


def read_header(f: BinaryIO, name: str) -> tuple[Header | None, list[str]]:
    """The parsed header of an open safetensors file and every framing problem (CKPT-7).

    Returns (None, problems) when the header itself cannot be parsed.
    """
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        return None, [f"{name} is truncated: {len(head)} bytes, fewer than the 8-byte "
                      "header length field"]
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
        return None, [f"{name} is truncated or corrupt: header length {n} exceeds the "
                      f"{size - 8} bytes after the length field"]
    if n > MAX_HEADER_BYTES:
        return None, [f"{name} is corrupt: header length {n} exceeds the safetensors limit of "
                      f"{MAX_HEADER_BYTES} bytes"]
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        return None, [f"{name} has a malformed JSON header: {err}"]
    if not isinstance(header, dict):
        return None, [f"{name} header must be a JSON object, got {type(header).__name__}"]
    return _parse_header(header, name, buffer_len=size - 8 - n, data_start=8 + n)


def _parse_header(header: dict, name: str, *, buffer_len: int,
                  data_start: int) -> tuple[Header, list[str]]:
    shapes: dict[str, tuple[int, ...] | None] = {}
    entries: dict[str, Entry] = {}
    spans: list[tuple[int, int, str]] = []
    problems: list[str] = []
    for key, value in header.items():
        if key == "__metadata__":
            if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
                problems.append(f"{name}: __metadata__ must map strings to strings")
            continue
        tag, shape, span = _parse_entry(key, value, buffer_len, problems)
        shapes[key] = shape
        if span is None:
            continue
        spans.append((span[0], span[1], key))
        if tag not in STORAGE_DTYPES:
            problems.append(f"tensor {short_repr(key)} has unsupported dtype {tag} (allowed: "
                            f"{', '.join(STORAGE_DTYPES)})")
            continue
        entries[key] = Entry(tag, shape, *span)
    problems += _check_spans(name, spans, buffer_len)
    return Header(shapes, entries, data_start), problems


def _parse_entry(key: str, entry: Any, buffer_len: int, problems: list[str]):
    """(dtype tag, shape, (begin, end)) of one header entry.

    After noting a problem, the shape (when unreadable) or the span is None.
    """
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        problems.append(f"tensor {short_repr(key)}: header entry must hold dtype, shape and "
                        f"data_offsets, got {short_repr(entry)}")
        return None, None, None
    tag, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]

    def is_count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(tag, str):
        problems.append(f"tensor {short_repr(key)}: dtype must be a string, got {short_repr(tag)}")
        return None, None, None
    if not (isinstance(shape, list) and all(map(is_count, shape))):
        problems.append(f"tensor {short_repr(key)}: shape must be a list of ints >= 0, "
                        f"got {short_repr(shape)}")
        return tag, None, None
    shape = tuple(shape)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_count, offsets))):
        problems.append(f"tensor {short_repr(key)}: data_offsets must be [begin, end], got "
                        f"{short_repr(offsets)}")
        return tag, shape, None
    begin, end = offsets
    if not begin <= end <= buffer_len:
        problems.append(f"tensor {short_repr(key)}: data_offsets {short_repr(offsets)} lie "
                        f"outside the {buffer_len}-byte data buffer (file truncated or corrupt)")
        return tag, shape, None
    if tag in STORAGE_DTYPES:
        expected = math.prod(shape) * STORAGE_DTYPES[tag].itemsize
        if end - begin != expected:
            problems.append(f"tensor {short_repr(key)}: {end - begin} data bytes do not match "
                            f"shape {short_repr(shape)} of {tag} ({short_repr(expected)} bytes)")
            return tag, shape, None
    return tag, shape, (begin, end)


def short_repr(value: Any, limit: int = 200) -> str:
    """repr(value), cut to ``limit`` characters (header values can be huge)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _check_spans(name: str, spans: list[tuple[int, int, str]], buffer_len: int) -> list[str]:
    """The tensors must tile the data buffer: no overlaps, no holes (as the safetensors format)."""
    problems = []
    position, previous = 0, None
    for begin, end, key in sorted(spans):
        if begin < position:
            problems.append(f"{name}: data of tensors {short_repr(previous)} and "
                            f"{short_repr(key)} overlap")
        elif begin > position:
            problems.append(f"{name}: {begin - position} unused bytes before tensor "
                            f"{short_repr(key)}")
        position, previous = max(position, end), key
    if spans and position != buffer_len:
        problems.append(f"{name}: {buffer_len - position} unused bytes after the last tensor")
    return problems


def decode(tag: str, raw: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """Raw little-endian bytes -> float64 array (exact for every accepted dtype, CKPT-4).

    A signalling NaN stays a NaN (reported by the caller), without a warning."""
    stored = np.frombuffer(raw, dtype=STORAGE_DTYPES[tag]).reshape(shape)
    if tag == "BF16":
        stored = bfloat16_bits_to_float32(stored)
    with np.errstate(invalid="ignore"):
        return stored.astype(np.float64)


def read_tensor(f: BinaryIO, header: Header, key: str) -> np.ndarray:
    """The float64 values of one checked entry, read by seeking to its bytes."""
    entry = header.entries[key]
    f.seek(header.data_start + entry.begin)
    raw = f.read(entry.end - entry.begin)
    if len(raw) != entry.end - entry.begin:
        raise OSError(f"file shrank while reading tensor {short_repr(key)}")
    return decode(entry.tag, raw, entry.shape)


def count_nonfinite(f: BinaryIO, header: Header, key: str, chunk_bytes: int = 1 << 24) -> int:
    """NaN and inf values of one checked entry, read in chunks (memory bounded by the chunk)."""
    entry = header.entries[key]
    itemsize = STORAGE_DTYPES[entry.tag].itemsize
    step = max(chunk_bytes // itemsize, 1) * itemsize
    f.seek(header.data_start + entry.begin)
    bad = 0
    for start in range(entry.begin, entry.end, step):
        raw = f.read(min(step, entry.end - start))
        values = decode(entry.tag, raw, (len(raw) // itemsize,))
        bad += int(np.count_nonzero(~np.isfinite(values)))
    return bad
