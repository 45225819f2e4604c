"""Bad checkpoints for the port-level loading tests (CKPT-5..9, LIM-1, LIM-2).

Each ``Corruption`` rewrites a copy of a valid checkpoint directory (the committed golden
``cls-flex-block``) in a temporary directory with one defect, using the oracle's own
safetensors writer (``reference_numpy.checkpoint.write_safetensors``: it writes NaN, infinities and
values beyond the target dtype as asked; ``save_checkpoint`` would refuse them). Nothing is
pickled: the "pickle" file of CKPT-6 holds bytes that are not a pickle at all, so a loader
that tried to unpickle it fails, and one that ignores it is unaffected.

``expect`` says what the port's ``load`` must do: ``"reject"`` (raise, the message naming
every string of ``names``) or ``"ignore"`` (load as the original). A test that needs the
port to load the file and compute (CKPT-9 on a binary64 loader) is written in the test.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MIB = 2**20

# Tensors of cls-flex-block (D = 16, depth 4, C = 10) the corruptions touch.
NAN_KEY = "blocks.0.attn.q.weight"
INF_KEY = "read_head.cattn.k.weight"
MISSING_KEY = "blocks.1.ffn.fc2.bias"
UNEXPECTED_KEY = "blocks.0.extra.weight"
RESHAPED_KEY = "output_adapter.ffn.weight"
BIG_KEY = "output_adapter.ffn.weight"
BIG_VALUE = 1e39  # finite in binary64, beyond float32's 3.4028235e38 (CKPT-9)


def read(directory: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config as stored, float64 weights) of a valid checkpoint, read by the oracle."""
    import reference_numpy

    _, weights = reference_numpy.load_checkpoint(directory)
    return json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8")), weights


def write(out: Path, config: dict | str | bytes, weights: dict[str, np.ndarray] | None,
          dtype: str = "float32") -> None:
    """``out/config.json`` (a dict as JSON, or the text/bytes given) and, unless ``weights``
    is None, ``out/model.safetensors`` in ``dtype`` (values written as they are)."""
    from reference_numpy.checkpoint import write_safetensors

    out.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(config, indent=2) if isinstance(config, dict) else config
    (out / CONFIG_NAME).write_bytes(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if weights is not None:
        write_safetensors(out / WEIGHTS_NAME, weights, dtype=dtype)


@dataclass(frozen=True)
class Corruption:
    """One defect: ``build(source, out)`` writes the bad checkpoint into ``out``."""

    id: str
    clause: str
    build: Callable[[Path, Path], None]
    expect: str  # "reject" or "ignore"
    names: tuple[str, ...] = ()  # strings the error message must contain
    posix_only: bool = False


def _edited(change: Callable[[dict, dict], None], dtype: str = "float32"):
    """A builder that applies ``change(config, weights)`` to a copy and writes it."""
    def build(source: Path, out: Path) -> None:
        config, weights = read(source)
        change(config, weights)
        write(out, config, weights, dtype)
    return build


def _set(key: str, value: float):
    def change(config: dict, weights: dict) -> None:
        weights[key] = weights[key].copy()
        weights[key].flat[0] = value
    return change


def _several(config: dict, weights: dict) -> None:
    _set(NAN_KEY, np.nan)(config, weights)
    del weights[MISSING_KEY]
    weights[UNEXPECTED_KEY] = np.zeros((4, 4))


def _many_unexpected(config: dict, weights: dict) -> None:
    for i in range(200):
        weights[f"extra.{i:03d}.weight"] = np.zeros(1)


def _config_text(text: Callable[[str], str | bytes]):
    """A builder keeping the weights and replacing config.json by ``text(original)``."""
    def build(source: Path, out: Path) -> None:
        shutil.copytree(source, out)
        (out / CONFIG_NAME).unlink()
        raw = text((source / CONFIG_NAME).read_text(encoding="utf-8"))
        (out / CONFIG_NAME).write_bytes(raw.encode("utf-8") if isinstance(raw, str) else raw)
    return build


def _repeated_key(original: str) -> str:
    """The config with its first key written twice (a JSON object with a repeated key)."""
    config = json.loads(original)
    first = next(iter(config))
    return "{" + f"{json.dumps(first)}: {json.dumps(config[first])}, " + original.strip()[1:]


def _oversized(original: str) -> str:
    """The config padded with spaces past 1 MiB (valid JSON, CKPT-8's size limit)."""
    return original.rstrip()[:-1] + " " * (MIB + 16) + "}"


def _config_dir(source: Path, out: Path) -> None:
    shutil.copytree(source, out)
    (out / CONFIG_NAME).unlink()
    (out / CONFIG_NAME).mkdir()


def _config_fifo(source: Path, out: Path) -> None:
    shutil.copytree(source, out)
    (out / CONFIG_NAME).unlink()
    os.mkfifo(out / CONFIG_NAME)


def _pickle_only(source: Path, out: Path) -> None:
    shutil.copytree(source, out)
    (out / WEIGHTS_NAME).rename(out / "pytorch_model.bin")
    (out / "pytorch_model.bin").write_bytes(b"not a pickle: CKPT-6 says never open this file")


def _pickle_beside(source: Path, out: Path) -> None:
    shutil.copytree(source, out)
    (out / "pytorch_model.bin").write_bytes(b"not a pickle: CKPT-6 says never open this file")


def _header_beyond_file(source: Path, out: Path) -> None:
    shutil.copytree(source, out)
    with open(out / WEIGHTS_NAME, "r+b") as f:
        f.write(struct.pack("<Q", 2**40))  # a header of 1 TiB in a file of a few KiB


def _truncated(source: Path, out: Path) -> None:
    shutil.copytree(source, out)
    data = (out / WEIGHTS_NAME).read_bytes()
    (out / WEIGHTS_NAME).write_bytes(data[:-64])


def _repeated_header_key(source: Path, out: Path) -> None:
    """A header naming one tensor twice (same entry), re-framed with its new length."""
    shutil.copytree(source, out)
    data = (out / WEIGHTS_NAME).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + n].decode("utf-8").rstrip()
    entries = json.loads(header)
    key = next(k for k in entries if k != "__metadata__")
    text = "{" + f"{json.dumps(key)}:{json.dumps(entries[key])}," + header[1:]
    text += " " * (-len(text) % 8)
    (out / WEIGHTS_NAME).write_bytes(struct.pack("<Q", len(text)) + text.encode("utf-8")
                                     + data[8 + n:])


def _set_config(**fields):
    def change(config: dict, weights: dict) -> None:
        config.update(fields)
    return change


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("nan-f32", "CKPT-5", _edited(_set(NAN_KEY, np.nan)), "reject", (NAN_KEY,)),
    Corruption("inf-f64", "CKPT-5", _edited(_set(INF_KEY, np.inf), "float64"), "reject",
               (INF_KEY,)),
    Corruption("missing-key", "CKPT-5", _edited(lambda c, w: w.pop(MISSING_KEY)), "reject",
               (MISSING_KEY,)),
    Corruption("unexpected-key", "CKPT-5",
               _edited(lambda c, w: w.update({UNEXPECTED_KEY: np.zeros((4, 4))})), "reject",
               (UNEXPECTED_KEY,)),
    Corruption("mis-shaped", "CKPT-5",
               _edited(lambda c, w: w.update({RESHAPED_KEY: w[RESHAPED_KEY].T.copy()})),
               "reject", (RESHAPED_KEY,)),
    Corruption("several-in-one-error", "CKPT-5", _edited(_several), "reject",
               (NAN_KEY, MISSING_KEY, UNEXPECTED_KEY)),
    Corruption("config-unknown-field", "CKPT-5", _edited(_set_config(embed_dims=16)),
               "reject", ("embed_dims",)),
    Corruption("config-bad-value", "CKPT-5", _edited(_set_config(num_heads=3)), "reject",
               ("num_heads",)),
    Corruption("config-not-json", "CKPT-5", _config_text(lambda text: text[:-3]), "reject",
               (CONFIG_NAME,)),
    Corruption("truncated-weights", "CKPT-5", _truncated, "reject", (WEIGHTS_NAME,)),
    Corruption("pickle-only", "CKPT-6", _pickle_only, "reject", (WEIGHTS_NAME,)),
    Corruption("pickle-beside", "CKPT-6", _pickle_beside, "ignore"),
    Corruption("header-beyond-file", "CKPT-7", _header_beyond_file, "reject", (WEIGHTS_NAME,)),
    Corruption("depth-1e9", "CKPT-7", _edited(_set_config(depth=10**9)), "reject"),
    Corruption("config-repeated-key", "CKPT-8", _config_text(_repeated_key), "reject",
               (CONFIG_NAME,)),
    Corruption("header-repeated-key", "CKPT-8", _repeated_header_key, "reject",
               (WEIGHTS_NAME,)),
    Corruption("config-over-1mib", "CKPT-8", _config_text(_oversized), "reject",
               (CONFIG_NAME,)),
    Corruption("config-directory", "CKPT-8", _config_dir, "reject", (CONFIG_NAME,)),
    Corruption("config-fifo", "CKPT-8", _config_fifo, "reject", (CONFIG_NAME,),
               posix_only=True),
    Corruption("embed_dim-2^31", "LIM-1", _edited(_set_config(embed_dim=2**31)), "reject",
               ("embed_dim",)),
    Corruption("max_latent_tokens-65537", "LIM-2",
               _edited(_set_config(max_latent_tokens=65537)), "reject",
               ("max_latent_tokens",)),
)

# CKPT-7: an error lists at most this many problems (then "... and N more problems").
MAX_LISTED_PROBLEMS = 50
MANY_UNEXPECTED = Corruption("200-unexpected-keys", "CKPT-7", _edited(_many_unexpected),
                             "reject")
# CKPT-9: a finite binary64 value beyond the float32 range.
BEYOND_FLOAT32 = Corruption("f64-beyond-float32", "CKPT-9",
                            _edited(_set(BIG_KEY, BIG_VALUE), "float64"), "reject", (BIG_KEY,))
