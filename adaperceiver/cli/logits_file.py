"""``sweep --save-logits``: the full-width logits of all N latents after each depth,
(n, K, C) float32 in one ``.npy`` file (rows in the data's order), written batch by batch
at each batch's row offset, so neither the set's logits nor a memory map are ever held.
Ranks write their own rows of the same file (a shared filesystem across nodes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DTYPE = np.dtype("<f4")


def create(path: Path, shape: tuple[int, int, int]) -> None:
    """An .npy file of ``shape`` float32, zero-filled (sparse where the filesystem allows)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": DTYPE.str, "fortran_order": False,
                                                 "shape": shape})
        f.truncate(f.tell() + int(np.prod(shape)) * DTYPE.itemsize)


class Rows:
    """Writes rows of an .npy file made by ``create``."""

    def __init__(self, path: Path):
        self.file = open(path, "r+b")  # noqa: SIM115 - closed by close()
        np.lib.format.read_magic(self.file)
        self.shape, _, _ = np.lib.format.read_array_header_1_0(self.file)
        self.offset = self.file.tell()
        self.row_bytes = int(np.prod(self.shape[1:])) * DTYPE.itemsize

    def write(self, first_row: int, rows: np.ndarray) -> None:
        """rows (b, K, C) at rows first_row .. first_row + b - 1."""
        self.file.seek(self.offset + first_row * self.row_bytes)
        self.file.write(np.ascontiguousarray(rows, dtype=DTYPE).tobytes())

    def close(self) -> None:
        self.file.close()
