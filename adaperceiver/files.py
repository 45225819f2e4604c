"""Writing outputs so that an interrupted or failed write never leaves a partial file that
later loads: everything is written to a temporary name beside the target and renamed onto
it (``os.replace``, atomic on one file system) only when complete.

New files and directories get the mode ``open()`` gives (0o666 / 0o777 minus the umask),
never the 0o600 / 0o700 of ``tempfile``. A failed write is a ``WriteError`` whose one-line
message names the file and the cause (disk full, file size limit, ...).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CAUSES = {  # errno -> what the user needs to know
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file size limit was reached (ulimit -f)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class WriteError(OSError):
    """An output could not be written; the message names the file and the cause."""


def write_failed(path: Path, error: OSError) -> WriteError:
    """A ``WriteError`` for ``path`` from the ``OSError`` that stopped the write."""
    cause = CAUSES.get(error.errno, error.strerror or str(error))
    return WriteError(f"cannot write {path}: {cause} ({error.strerror or error})")


def _temporary(path: Path) -> Path:
    """A hidden, unused name beside ``path`` (same directory, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def check_writable(directory: Path, flag: str) -> None:
    """``WriteError`` unless a file can be created in ``directory`` (tried with a probe file,
    which also catches read-only mounts that ``os.access`` reports as writable)."""
    if not directory.is_dir():
        raise WriteError(f"{flag}: the directory {directory} does not exist")
    probe = _temporary(directory / "write-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise WriteError(f"{flag}: cannot write in {directory}: "
                         f"{CAUSES.get(err.errno, err.strerror)}") from None
    probe.unlink()


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file object for ``path``: written to a temporary file in the same directory,
    flushed and fsynced, then renamed onto ``path`` on a clean exit; removed on any error
    (an ``OSError`` becomes a ``WriteError`` naming ``path``). A kill at any point leaves
    ``path`` as it was (absent or the previous complete file)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise (err if isinstance(err, WriteError) else write_failed(path, err)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(out: Path, replace: frozenset[str] = frozenset()) -> Iterator[Path]:
    """A new temporary directory beside ``out`` to fill; on a clean exit it becomes ``out``.

    ``out`` may be absent or an empty directory (replaced by one rename). A non-empty ``out``
    is replaced only if every entry's name is in ``replace`` (the files this output consists
    of: never a directory holding anything else); it is renamed aside, the new directory
    renamed into place, then the old one removed. On any error the temporary directory is
    removed and ``out`` is unchanged."""
    out = Path(out)
    tmp = _temporary(out)
    try:
        os.mkdir(tmp, 0o777)
    except OSError as err:
        raise write_failed(tmp, err) from err
    try:
        yield tmp
        for name in os.listdir(tmp):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        old = None
        if out.is_dir() and any(out.iterdir()):
            _check_replaceable(out, replace)
            old = _temporary(out)
            os.rename(out, old)
        os.replace(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        problem = err if isinstance(err, WriteError) else write_failed(out, err)
        raise WriteError(f"{problem}; {out} is unchanged") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)


def _check_replaceable(out: Path, replace: frozenset[str]) -> None:
    others = sorted(p.name for p in out.iterdir() if p.name not in replace or not p.is_file())
    if others:
        raise WriteError(f"{out} holds other entries ({', '.join(others[:5])}"
                         f"{', ...' if len(others) > 5 else ''}); it is not replaced")
