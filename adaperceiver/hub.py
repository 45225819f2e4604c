"""Checkpoint I/O in the published layout: config.json + model.safetensors (CKPT-1..8).

``CheckpointMixin`` replaces the loading and saving of ``PyTorchModelHubMixin``:

* ``from_pretrained(path_or_repo_id)`` reads config.json (a regular file of at most
  1 MiB without duplicate keys, CKPT-8) and checks it, reads only the header of
  model.safetensors (length checked against the file size and the format's 100 MB cap;
  no duplicate keys) and compares the number of tensors the config describes with the
  header's before the model is built (CKPT-7). It then builds the model on the meta device,
  reads each tensor with the safetensors library (never pickle, CKPT-6), casts
  float16/bfloat16/float64 to float32 (CKPT-4; a float64 value beyond the float32 range
  is an error, CKPT-9) and checks the state dict strictly: every missing, unexpected,
  mis-shaped, wrong-dtype or non-finite tensor is listed in one ``CheckpointError`` (CKPT-5).
* ``save_pretrained(directory)`` (the mixin's) writes config.json with every
  constructor keyword and model.safetensors with the published key names, each through
  ``files.atomic_write`` (complete or absent, the mode a new file gets under the umask).
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .config import ConfigError, ProblemList, resolve_config
from .files import atomic_write

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ACCEPTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MAX_CONFIG_BYTES = 1 << 20  # CKPT-8: a config.json holds ~30 keys
MAX_HEADER_BYTES = 100_000_000  # CKPT-7: the safetensors format's header cap
# CKPT-7: a config may describe this many tensors beyond the header's before the comparison
# is summarised instead of building every block
EXTRA_KEYS = 1024
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(ProblemList):
    """A checkpoint cannot be used (CKPT-5); the message names ``source`` (its directory)
    when given and lists the problems, one per line (at most 50, then a count)."""

    def __init__(self, problems: Iterable[str], source: object = None):
        super().__init__("checkpoint" if source is None else f"checkpoint {source}", problems)


def resolve_files(path_or_repo_id: str | os.PathLike, **hub_kwargs: Any) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a local directory or a hub repo (CKPT-1).

    A path that exists but is not a directory, or a missing path that is not shaped like
    a hub repo id (owner/name), is a ``CheckpointError``."""
    if not isinstance(path_or_repo_id, (str, os.PathLike)) or isinstance(path_or_repo_id, bytes):
        raise TypeError("pretrained_model_name_or_path must be a checkpoint directory (str or "
                        f"os.PathLike) or a hub repo id, got {type(path_or_repo_id).__name__}")
    local = Path(path_or_repo_id)
    if local.is_dir():
        return local / CONFIG_NAME, local / WEIGHTS_NAME
    if local.exists():
        raise CheckpointError([f"{local} is not a directory; pass the checkpoint directory "
                               f"holding {CONFIG_NAME} and {WEIGHTS_NAME}"])
    repo_id = os.fspath(path_or_repo_id)
    if isinstance(path_or_repo_id, Path) or not _REPO_ID.match(repo_id):
        raise CheckpointError([f"no checkpoint directory {repo_id!r} (and it is not a hub repo "
                               "id of the form owner/name)"])
    files = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            files.append(Path(hf_hub_download(repo_id, name, **hub_kwargs)))
        except Exception as err:  # offline, unknown repo, missing file: one clear message
            raise OSError(
                f"cannot load {name} of {repo_id!r}: it is not a local directory and the "
                f"Hugging Face hub did not provide it ({type(err).__name__}: {err})") from err
    return files[0], files[1]


def check_map_location(map_location: Any) -> torch.device:
    """``map_location`` as a device that exists here, else ``ValueError`` / ``TypeError``."""
    if not isinstance(map_location, (str, torch.device)):
        raise TypeError("map_location must be a device string such as 'cpu' or a "
                        f"torch.device, got {type(map_location).__name__}")
    try:
        device = torch.device(map_location)
    except RuntimeError as err:
        raise ValueError(f"map_location must name a torch device, got {map_location!r} "
                         f"({str(err).splitlines()[0]})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location {map_location!r} needs CUDA, which is not available "
                         "here (no CUDA device or a CPU-only PyTorch build)")
    return device


def _open_regular(path: Path) -> BinaryIO:
    """The file opened for reading if it is a regular file (CKPT-8), else CheckpointError.
    Opened non-blocking, so a FIFO is reported, never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CheckpointError([f"{path.name} is missing"], path.parent) from None
    except OSError as err:
        raise CheckpointError([f"{path.name} cannot be opened ({err.strerror or err}); it must "
                               "be a regular file"], path.parent) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError([f"{path.name} is not a regular file"], path.parent)
    return os.fdopen(fd, "rb")


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook (CKPT-8): a key given twice is an error, found in one pass."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} appears more than once")
        obj[key] = value
    return obj


def _parse_json(raw: bytes, what: str, directory: Path) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_repeated_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError([f"{what} is not valid JSON: {str(err)[:300]}"], directory) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in a small file of a checkpoint (CKPT-8): a regular file (never a
    FIFO or device, which are not waited on or read), at most ``MAX_CONFIG_BYTES``, valid
    JSON without duplicate keys, an object. Else a ``CheckpointError`` naming the file."""
    with _open_regular(path) as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError([f"{path.name} is larger than {MAX_CONFIG_BYTES} bytes; it is "
                               "not an AdaPerceiver checkpoint file"], path.parent)
    found = _parse_json(raw, path.name, path.parent)
    if not isinstance(found, dict):
        raise CheckpointError([f"{path.name} must hold a JSON object, got "
                               f"{type(found).__name__}"], path.parent)
    return found


def read_config(path: Path) -> dict[str, Any]:
    """The constructor keywords stored in config.json (CKPT-2, CKPT-8)."""
    return read_json_object(path)


def read_header_keys(path: Path) -> list[str]:
    """The tensor keys of model.safetensors, from its header alone (CKPT-7, CKPT-8).

    The 8-byte length must fit the file and the 100 MB cap; the JSON must be an object
    without repeated keys. Entries are checked later by the safetensors library."""
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if n is None or n > size - 8 or n > MAX_HEADER_BYTES:
            raise CheckpointError([f"{WEIGHTS_NAME} cannot be read: header length "
                                   f"{'missing' if n is None else n} does not fit the "
                                   f"{size}-byte file and the {MAX_HEADER_BYTES}-byte "
                                   "header limit"], path.parent)
        header = _parse_json(f.read(n), f"{WEIGHTS_NAME} header", path.parent)
    if not isinstance(header, dict):
        raise CheckpointError([f"{WEIGHTS_NAME} header must be a JSON object"], path.parent)
    return [key for key in header if key != "__metadata__"]


def build_on_meta(cls: type, config: dict[str, Any], directory: Path) -> torch.nn.Module:
    """``cls(**config)`` on the meta device (shapes only, no values); a config that cannot
    be built (sizes too large for torch) is a CheckpointError."""
    try:
        with torch.device("meta"):
            return cls(**config)
    except (RuntimeError, TypeError, OverflowError, ValueError, MemoryError) as err:
        raise CheckpointError([f"{CONFIG_NAME} describes a model that cannot be built: "
                               f"{(str(err).splitlines() or [''])[0][:300]}"],
                              directory) from None


def check_size_against_header(cls: type, config: dict[str, Any], keys: list[str],
                              directory: Path) -> None:
    """CKPT-7: the number of tensors the config describes, counted from a one-block model,
    must not exceed the header's key count by more than ``EXTRA_KEYS``; otherwise the
    config does not belong to the weights and the full model is never built."""
    probe = build_on_meta(cls, {**config, "depth": 1}, directory).state_dict()
    per_block = sum(key.startswith("blocks.0.") for key in probe)
    described = len(probe) + (config["depth"] - 1) * per_block
    if described > len(keys) + EXTRA_KEYS:
        raise CheckpointError([f"{CONFIG_NAME} (depth {config['depth']}) describes {described} "
                               f"tensors but {WEIGHTS_NAME} holds {len(keys)}; the config does "
                               "not belong to these weights"], directory)


def read_state_dict(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors as float32, checked against ``expected`` (CKPT-3..5, 9).

    Raises ``CheckpointError`` listing every missing, unexpected, mis-shaped,
    wrong-dtype, non-finite and float32-overflowing tensor.
    """
    problems: list[str] = []
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = list(f.keys())
            for key in stored:
                if key not in expected:
                    problems.append(f"unexpected tensor {key!r}")
                    continue
                tensor = f.get_tensor(key)
                problem = _tensor_problem(key, tensor, tuple(expected[key].shape))
                if problem:
                    problems.append(problem)
                    continue
                # a copy: stored tensors sit at arbitrary file offsets, and unaligned
                # storage makes CPU kernels round differently from a model built here
                tensors[key] = tensor.to(torch.float32, copy=True)
                overflow = int(torch.isinf(tensors[key]).sum())
                if overflow:  # CKPT-9: finite float64 values beyond the float32 range
                    problems.append(f"tensor {key!r} has {overflow} value(s) whose magnitude "
                                    f"exceeds {FLOAT32_MAX:.8g}: the value overflows float32")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError([f"{WEIGHTS_NAME} cannot be read: {err}"], path.parent) from err
    problems += [f"missing tensor {key!r} with shape {tuple(t.shape)}"
                 for key, t in expected.items() if key not in stored]
    if problems:
        raise CheckpointError(problems, path.parent)
    return tensors


def _tensor_problem(key: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> str | None:
    """What is wrong with one stored tensor (shape, dtype, finiteness), or None."""
    if tuple(tensor.shape) != shape:
        return f"tensor {key!r} has shape {tuple(tensor.shape)}, expected {shape}"
    if tensor.dtype not in ACCEPTED_DTYPES:
        return (f"tensor {key!r} has unsupported dtype {tensor.dtype} "
                "(allowed: float32, float16, bfloat16, float64)")
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        return f"tensor {key!r} has {bad} non-finite value(s) (NaN or inf)"
    return None


class CheckpointMixin(PyTorchModelHubMixin):
    """Strict, safetensors-only ``from_pretrained`` and a ``save_pretrained`` writing the
    published layout (config.json with every constructor keyword, model.safetensors)."""

    config: dict[str, Any]
    _defaults: dict[str, Any]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *,
                        map_location: str | torch.device = "cpu", **hub_kwargs: Any):
        """Load a checkpoint directory or hub repo; hub_kwargs go to ``hf_hub_download``
        (revision, cache_dir, token, local_files_only, ...)."""
        device = check_map_location(map_location)
        config_path, weights_path = resolve_files(pretrained_model_name_or_path, **hub_kwargs)
        directory = config_path.parent
        given = read_config(config_path)
        try:
            config = resolve_config(cls._defaults, given)
        except ConfigError as err:
            raise CheckpointError([f"{CONFIG_NAME}: {p}" for p in err.problems],
                                  directory) from err
        check_size_against_header(cls, config, read_header_keys(weights_path), directory)
        model = build_on_meta(cls, config, directory)  # no random init that the load overwrites
        state = read_state_dict(weights_path, model.state_dict())
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device).eval()

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write config.json (every constructor keyword) and model.safetensors (float32,
        published key names) into ``save_directory``."""
        save_directory = Path(save_directory)
        with atomic_write(save_directory / CONFIG_NAME) as f:
            f.write((json.dumps(self.config, indent=2) + "\n").encode("utf-8"))
        state = {k: v.detach().to("cpu", torch.float32).contiguous()
                 for k, v in self.state_dict().items()}
        # serialised in memory and written by atomic_write: safetensors' own file writer
        # creates mode 0600 files and reports a full disk without its errno
        with atomic_write(save_directory / WEIGHTS_NAME) as f:
            f.write(save(state))
