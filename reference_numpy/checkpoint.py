"""Checkpoint layout and I/O: a directory with config.json and model.safetensors.

Spec clauses (``spec/checkpoint.md``):

* CKPT-1  a checkpoint is a directory (or hub repo) holding ``config.json`` and
  ``model.safetensors``;
* CKPT-3  state-dict keys and shapes (``expected_shapes``);
* CKPT-4  tensor dtypes F32, F16, BF16 (and F64) are decoded exactly to float64;
* CKPT-5  ``load_checkpoint`` reports every problem in one ``CheckpointError``;
* CKPT-6  only safetensors is read, by hand, never with pickle.

Symbols: D = embed_dim, F = int(D * ffn_ratio), P = patch_size,
M = (img_size / P)^2 patches, C = num_classes, E = output_feat_dim.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bfloat16 import float_to_bfloat16_bits
from .config import ConfigError, config_kind, validate_config
from .safetensors_reader import (
    STORAGE_DTYPES,
    count_nonfinite,
    decode,
    open_regular,
    read_header,
    read_tensor,
    reject_duplicates,
    short_repr,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MAX_CONFIG_BYTES = 1 << 20  # config.json holds ~30 keys; a larger file is not a config (CKPT-8)
LISTED_PROBLEMS = 50  # a CheckpointError message lists at most this many problems (CKPT-7)
# The layout is enumerated only up to this many keys beyond the header's key count, so a
# config that does not belong to the weights file costs work bounded by the header (CKPT-7).
LAYOUT_SLACK = 1024

# dtype name accepted by save_checkpoint -> safetensors dtype tag
_TAG_OF = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; ``problems`` holds every problem and the message lists
    them one per line (each cut to 500 characters), the first ``LISTED_PROBLEMS`` then
    "... and N more problems"."""

    def __init__(self, problems: list[str], source: object = None):
        self.problems = list(problems)
        where = f" {source}" if source is not None else ""
        listed = [p if len(p) <= 500 else f"{p[:500]}... ({len(p)} characters)"
                  for p in self.problems[:LISTED_PROBLEMS]]
        if len(self.problems) > LISTED_PROBLEMS:
            listed.append(f"... and {len(self.problems) - LISTED_PROBLEMS} more problems")
        super().__init__(f"invalid AdaPerceiver checkpoint{where}:\n  - " + "\n  - ".join(listed))


# --------------------------------------------------------------------------- layout (CKPT-3)


@dataclass(frozen=True)
class _Param:
    """One state-dict entry. ``role`` picks the initialisation in ``random_weights``."""

    shape: tuple[int, ...]
    role: str  # "weight" (linear or conv), "bias", "norm_weight", "gamma" or "embedding"


def _linear(prefix: str, d_out: int, d_in: int, *, bias: bool = True) -> Iterator:
    yield f"{prefix}.weight", _Param((d_out, d_in), "weight")
    if bias:
        yield f"{prefix}.bias", _Param((d_out,), "bias")


def _layer_norm(prefix: str, D: int) -> Iterator:
    yield f"{prefix}.weight", _Param((D,), "norm_weight")
    yield f"{prefix}.bias", _Param((D,), "bias")


def _mlp(prefix: str, d_in: int, hidden: int, d_out: int) -> Iterator:
    """fc2(GELU(fc1(x))); both linears always carry a bias."""
    yield from _linear(f"{prefix}.fc1", hidden, d_in)
    yield from _linear(f"{prefix}.fc2", d_out, hidden)


def _attention(prefix: str, D: int, c: Mapping[str, Any]) -> Iterator:
    """q, k, v biases follow qkv_bias; the proj bias follows proj_bias."""
    for name in ("q", "k", "v"):
        yield from _linear(f"{prefix}.{name}", D, D, bias=c["qkv_bias"])
    yield from _linear(f"{prefix}.proj", D, D, bias=c["proj_bias"])


def _cross_attention_fusion(prefix: str, D: int, c: Mapping[str, Any]) -> Iterator:
    yield from _layer_norm(f"{prefix}.src_norm", D)
    yield from _layer_norm(f"{prefix}.snk_norm", D)
    yield from _attention(f"{prefix}.cattn", D, c)


def _block(prefix: str, D: int, F: int, c: Mapping[str, Any]) -> Iterator:
    """Pre-norm block; LayerScale gammas only when ls_init_values is truthy."""
    yield from _layer_norm(f"{prefix}.norm1", D)
    yield from _attention(f"{prefix}.attn", D, c)
    if c["ls_init_values"]:
        yield f"{prefix}.ls1.gamma", _Param((D,), "gamma")
    yield from _layer_norm(f"{prefix}.norm2", D)
    yield from _mlp(f"{prefix}.ffn", D, F, D)
    if c["ls_init_values"]:
        yield f"{prefix}.ls2.gamma", _Param((D,), "gamma")


def _layout(config: Mapping[str, Any]) -> dict[str, _Param]:
    """Every state-dict key of the model described by a validated config, in canonical order."""
    return dict(_layout_entries(config))


def _layout_entries(config: Mapping[str, Any]) -> Iterator[tuple[str, _Param]]:
    """(key, _Param) of the layout, lazily: the count of blocks can be huge (CKPT-7)."""
    c = config
    D, P, C = c["embed_dim"], c["patch_size"], c["num_classes"]
    F = int(D * c["ffn_ratio"])  # Python float arithmetic, as upstream (MAT-1)
    M = (c["img_size"] // P) ** 2

    def entries() -> Iterator:
        yield "process_latents.token", _Param((D,), "embedding")
        yield "output_latents.token", _Param((1, D), "embedding")
        yield "patch_embed.embed.proj.weight", _Param((D, c["in_channels"], P, P), "weight")
        yield "patch_embed.embed.proj.bias", _Param((D,), "bias")
        yield "patch_embed.pos_embed", _Param((1, M, D), "embedding")
        if c["use_embed_ffn"]:
            yield from _layer_norm("patch_embed.norm", D)
            yield from _mlp("patch_embed.ffn", D, F, D)
        yield from _cross_attention_fusion("read_head", D, c)
        yield from _cross_attention_fusion("write_head", D, c)
        for i in range(c["depth"]):
            yield from _block(f"blocks.{i}", D, F, c)
        if c["use_output_ffn"]:
            yield from _layer_norm("output_adapter.norm", D)
            yield from _mlp("output_adapter.ffn", D, F, C)
        else:
            yield from _linear("output_adapter.ffn", C, D)
        if config_kind(c) == "distill":
            yield from _linear("output_latents_feat.proj", D, D)
            yield from _cross_attention_fusion("write_head_feat", D, c)
            yield from _layer_norm("output_adapter_feat.norm", D)
            yield from _mlp("output_adapter_feat.ffn", D, F, c["output_feat_dim"])

    return entries()


def expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape for a (classification or distill) config. Spec CKPT-3."""
    return {key: p.shape for key, p in _layout(validate_config(config)).items()}


def random_weights(config: Mapping[str, Any], *, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic float64 weights in which every parameter matters.

    LayerNorm weights 1 + 0.2 z, biases 0.2 z, linear and conv weights
    z / sqrt(fan_in), LayerScale gammas uniform in [0.3, 1.0), tokens and
    pos_embed z (z standard normal). Unlike upstream's init (gamma 1e-6, zero
    biases) no term is negligible, and the scales keep activations O(1) so
    float32 and float64 runs agree closely.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for key, p in _layout(validate_config(config)).items():
        z = rng.standard_normal(p.shape)
        if p.role == "weight":
            weights[key] = z / math.sqrt(math.prod(p.shape[1:]))
        elif p.role == "bias":
            weights[key] = 0.2 * z
        elif p.role == "norm_weight":
            weights[key] = 1.0 + 0.2 * z
        elif p.role == "gamma":
            weights[key] = rng.uniform(0.3, 1.0, p.shape)
        else:
            weights[key] = z
    return weights


# ------------------------------------------------------------- safetensors framing (CKPT-4, 6)


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray], *,
                      dtype: str = "float32") -> None:
    """Write ``tensors`` converted to ``dtype`` as a safetensors file. No layout checks.

    Format: 8-byte little-endian header length n, n bytes of JSON header
    (space-padded to a multiple of 8), then the raw little-endian tensor bytes
    in header order. bfloat16 is rounded to nearest even via float32.
    """
    if dtype not in _TAG_OF:
        raise ValueError(f"dtype must be one of {list(_TAG_OF)}, got {dtype!r}")
    header: dict[str, Any] = {}
    chunks = []
    offset = 0
    for key, array in tensors.items():
        raw = _encode_bytes(array, dtype)
        header[key] = {"dtype": _TAG_OF[dtype], "shape": list(np.shape(array)),
                       "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)


# ---------------------------------------------------------------- checkpoints (CKPT-1, 5)


def save_checkpoint(directory: str | Path, config: Mapping[str, Any],
                    weights: Mapping[str, np.ndarray], *, dtype: str = "float32") -> Path:
    """Write ``config.json`` (every key, validated) and ``model.safetensors`` in ``directory``.

    ``weights`` must match ``expected_shapes(config)`` exactly and be finite,
    also after conversion to ``dtype`` (float32, float16, bfloat16 or float64);
    otherwise a ``CheckpointError`` lists every problem and nothing is written.
    """
    if dtype not in _TAG_OF:
        raise ValueError(f"dtype must be one of {list(_TAG_OF)}, got {dtype!r}")
    config = validate_config(config)
    shapes = {key: p.shape for key, p in _layout(config).items()}
    got = {key: tuple(np.shape(value)) for key, value in weights.items()}
    problems = _layout_problems(shapes, got)
    for key in shapes.keys() & got.keys():
        stored = decode(_TAG_OF[dtype], _encode_bytes(weights[key], dtype), got[key])
        if not np.all(np.isfinite(stored)):
            problems.append(f"tensor {key!r} is not finite when stored as {dtype}")
    if problems:
        raise CheckpointError(problems, source=f"(not written to {directory})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(directory / WEIGHTS_NAME, {key: weights[key] for key in shapes},
                      dtype=dtype)
    return directory


def _encode_bytes(array: Any, dtype: str) -> memoryview:
    """The bytes ``write_safetensors`` stores for one tensor.

    Values too large for ``dtype`` become +-inf silently here; ``save_checkpoint``
    reports them.
    """
    tag = _TAG_OF[dtype]
    with np.errstate(over="ignore"):
        if tag == "BF16":
            return memoryview(float_to_bfloat16_bits(np.asarray(array)).tobytes())
        return memoryview(np.ascontiguousarray(array, dtype=STORAGE_DTYPES[tag]).tobytes())


def _layout_problems(expected: Mapping[str, tuple], got: Mapping[str, tuple]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches, in canonical order.

    A ``got`` shape of None (unreadable header entry) is present but not compared.
    """
    problems = [f"missing tensor {short_repr(key)} (expected shape {shape})"
                for key, shape in expected.items() if key not in got]
    problems += [f"unexpected tensor {short_repr(key)} (shape {short_repr(shape)})"
                 for key, shape in got.items() if key not in expected]
    problems += [f"tensor {short_repr(key)}: expected shape {shape}, got {short_repr(got[key])}"
                 for key, shape in expected.items()
                 if got.get(key) is not None and got[key] != shape]
    return problems


def load_checkpoint(path_or_repo_id: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load (config, float64 weights) from a checkpoint directory or a hub repo id.

    A local directory is used when it exists; otherwise a string shaped like
    ``owner/name`` is fetched with ``huggingface_hub.hf_hub_download``.
    Everything is validated (config values, keys, shapes, dtypes, finiteness,
    file integrity) and all problems are raised together as one ``CheckpointError``.
    Only the header of model.safetensors is read before the layout is checked against
    the config; then each expected tensor is read at its offset (CKPT-7).
    """
    if not isinstance(path_or_repo_id, (str, os.PathLike)):
        raise TypeError("path_or_repo_id must be a directory path or a hub repo id string, "
                        f"got {type(path_or_repo_id).__name__}")
    config_path, weights_path = _resolve(path_or_repo_id)
    problems: list[str] = []
    config = _read_config(config_path, problems)
    f, problem = open_regular(weights_path)
    if f is None:
        if problem.startswith("missing"):
            problem = _missing_weights_message(weights_path)
        problems.append(problem)
        raise CheckpointError(problems, source=str(path_or_repo_id))
    with f:
        try:
            weights = _read_weights(f, config, problems)
        except OSError as err:
            problems.append(f"cannot read {WEIGHTS_NAME}: {err}")
    if problems:
        raise CheckpointError(problems, source=str(path_or_repo_id))
    return config, weights


def _read_weights(f, config: dict[str, Any] | None, problems: list[str]) -> dict[str, np.ndarray]:
    """Header first, then the layout check (bounded, CKPT-7), then each expected tensor."""
    header, framing = read_header(f, WEIGHTS_NAME)
    if header is None:
        problems += framing
        return {}
    expected: dict[str, tuple[int, ...]] = {}
    if config is not None:
        limit = len(header.shapes) + LAYOUT_SLACK
        entries = list(itertools.islice(_layout_entries(config), limit + 1))
        if len(entries) > limit:
            problems.append(
                f"{CONFIG_NAME} describes a model with more than {limit} tensors (depth "
                f"{config['depth']}) but {WEIGHTS_NAME} holds {len(header.shapes)}: the config "
                "does not belong to these weights")
            config = None
        else:
            expected = {key: p.shape for key, p in entries}
            problems += _layout_problems(expected, header.shapes)
    problems += framing
    if config is None:  # nothing to compare with: still report every non-finite tensor
        problems += [f"tensor {short_repr(key)} has {bad} non-finite value(s) (NaN or inf)"
                     for key in header.entries if (bad := count_nonfinite(f, header, key))]
        return {}
    weights = {}
    for key, shape in expected.items():
        if key in header.entries and header.entries[key].shape == shape:
            values = read_tensor(f, header, key)
            bad = int(np.count_nonzero(~np.isfinite(values)))
            if bad:
                problems.append(f"tensor {key!r} has {bad} non-finite value(s) (NaN or inf)")
            weights[key] = values
    return weights


def _read_config(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The validated config, or None after noting every problem (CKPT-2, CKPT-8)."""
    f, problem = open_regular(path)
    if f is None:
        problems.append(problem)
        return None
    try:
        with f:
            text = f.read(MAX_CONFIG_BYTES + 1)
        if len(text) > MAX_CONFIG_BYTES:
            problems.append(f"{CONFIG_NAME} is larger than {MAX_CONFIG_BYTES} bytes; it is not "
                            "an AdaPerceiver config")
            return None
        raw = json.loads(text.decode("utf-8"), object_pairs_hook=reject_duplicates)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        problems.append(f"{CONFIG_NAME} is not valid JSON: {err}")
        return None
    try:
        return validate_config(raw)
    except ConfigError as err:
        problems += [f"{CONFIG_NAME}: {p}" for p in err.problems]
        return None


def _missing_weights_message(path: Path) -> str:
    pickles = sorted(p.name for p in path.parent.glob("*.bin")) + sorted(
        p.name for p in path.parent.glob("*.pt*"))
    hint = (f"; found {pickles}, which are pickle files and are never loaded"
            if pickles else "")
    return f"missing {WEIGHTS_NAME} in {path.parent}{hint}"


def _resolve(path_or_repo_id: str | Path) -> tuple[Path, Path]:
    """(config.json path, model.safetensors path) of a local directory or a hub repo."""
    path = Path(path_or_repo_id)
    if path.is_dir():
        return path / CONFIG_NAME, path / WEIGHTS_NAME
    if path.exists():
        raise CheckpointError([f"{path} is a file; pass the checkpoint directory holding "
                               f"{CONFIG_NAME} and {WEIGHTS_NAME}"])
    repo_id = str(path_or_repo_id)
    if isinstance(path_or_repo_id, Path) or not _HUB_REPO_ID.match(repo_id):
        raise CheckpointError([f"no checkpoint directory {repo_id!r} (and it is not a hub "
                               "repo id of the form owner/name)"])
    return _download(repo_id, CONFIG_NAME), _download(repo_id, WEIGHTS_NAME)


def _download(repo_id: str, filename: str) -> Path:
    from huggingface_hub import constants, hf_hub_download

    offline = " with HF_HUB_OFFLINE set" if constants.is_offline_mode() else ""
    try:
        return Path(hf_hub_download(repo_id, filename, etag_timeout=10))
    # Any failure (offline mode, no network, missing repo or file, HTTP error) means the
    # same thing to the caller; the cause stays chained for debugging.
    except Exception as err:  # noqa: BLE001
        cause = (str(err).splitlines() or [""])[0]
        raise CheckpointError([
            f"{repo_id!r} is not a local directory and {filename} could not be fetched from "
            f"the Hugging Face hub{offline} ({type(err).__name__}: {cause}). Download the repo "
            f"(e.g. `hf download {repo_id} --local-dir DIR`) and pass the local directory."
        ]) from err
