"""Checkpoint I/O in the published layout: config.json + model.safetensors (CKPT-1..6).

``CheckpointMixin`` replaces the loading and saving of ``PyTorchModelHubMixin``:

* ``from_pretrained(path_or_repo_id)`` reads config.json, builds the model (unknown or
  bad keys are errors), reads model.safetensors with the safetensors library (never
  pickle, CKPT-6), casts float16/bfloat16/float64 tensors to float32 (CKPT-4) and
  checks the state dict strictly: every missing, unexpected, mis-shaped, wrong-dtype
  or non-finite tensor is listed in one ``CheckpointError`` (CKPT-5).
* ``save_pretrained(directory)`` (the mixin's) writes config.json with every
  constructor keyword and model.safetensors with the published key names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ConfigError, ProblemList

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ACCEPTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class CheckpointError(ProblemList):
    """A checkpoint cannot be used (CKPT-5); the message names ``source`` (its directory)
    when given and lists every problem, one per line."""

    def __init__(self, problems: Iterable[str], source: object = None):
        super().__init__("checkpoint" if source is None else f"checkpoint {source}", problems)


def resolve_files(path_or_repo_id: str | os.PathLike, **hub_kwargs: Any) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a local directory or a hub repo (CKPT-1)."""
    local = Path(path_or_repo_id)
    if local.is_dir():
        return local / CONFIG_NAME, local / WEIGHTS_NAME
    repo_id = str(path_or_repo_id)
    files = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            files.append(Path(hf_hub_download(repo_id, name, **hub_kwargs)))
        except Exception as err:  # offline, unknown repo, missing file: one clear message
            raise OSError(
                f"cannot load {name} of {repo_id!r}: it is not a local directory and the "
                f"Hugging Face hub did not provide it ({type(err).__name__}: {err})") from err
    return files[0], files[1]


def read_config(path: Path) -> dict[str, Any]:
    """The constructor keywords stored in config.json."""
    if not path.is_file():
        raise CheckpointError([f"{CONFIG_NAME} is missing"], path.parent)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError([f"{CONFIG_NAME} is not valid JSON: {err}"], path.parent) from err
    if not isinstance(config, dict):
        raise CheckpointError([f"{CONFIG_NAME} must hold a JSON object, got "
                               f"{type(config).__name__}"], path.parent)
    return config


def read_state_dict(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors as float32, checked against ``expected`` (CKPT-3..5).

    Raises ``CheckpointError`` listing every missing, unexpected, mis-shaped,
    wrong-dtype and non-finite tensor.
    """
    if not path.is_file():
        raise CheckpointError([f"{WEIGHTS_NAME} is missing"], path.parent)
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
                else:
                    # a copy: stored tensors sit at arbitrary file offsets, and unaligned
                    # storage makes CPU kernels round differently from a model built here
                    tensors[key] = tensor.to(torch.float32, copy=True)
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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *,
                        map_location: str | torch.device = "cpu", **hub_kwargs: Any):
        """Load a checkpoint directory or hub repo; hub_kwargs go to ``hf_hub_download``
        (revision, cache_dir, token, local_files_only, ...)."""
        config_path, weights_path = resolve_files(pretrained_model_name_or_path, **hub_kwargs)
        config = read_config(config_path)
        try:
            with torch.device("meta"):  # shapes only: no random init that the load overwrites
                model = cls(**config)
        except ConfigError as err:
            raise CheckpointError([f"{CONFIG_NAME}: {p}" for p in err.problems],
                                  config_path.parent) from err
        state = read_state_dict(weights_path, model.state_dict())
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(map_location).eval()

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write config.json (every constructor keyword) and model.safetensors (float32,
        published key names) into ``save_directory``."""
        save_directory = Path(save_directory)
        (save_directory / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        state = {k: v.detach().to("cpu", torch.float32).contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / WEIGHTS_NAME))
