"""Goldens of the published checkpoints (GOLD-1, second part): record, locate and read.

``record`` runs the oracle on the real weights (``reference_numpy.load_checkpoint``:
a local directory or a hub id) for fixed deterministic inputs and calls — the
default, every granularity, every width of ``mat_dims``, depths 1, K/2 and K,
and a confidence exit per policy (classification) — and writes ONE safetensors
file: tensors ``images`` (float16, exact in float32) and ``call_<i>.logits`` /
``call_<i>.exit_depths`` / ``call_<i>.features`` (features for call 0 only), and
string metadata ``format``, ``format_version``, ``model``, ``kind``,
``config_sha256``, ``weights_sha256`` and ``calls`` (JSON list of call args).

The suite's ``checkpoint`` tests find the weights with ``locate_weights``:
``$ADAPERCEIVER_CHECKPOINT_DIR`` (classification) or
``$ADAPERCEIVER_DISTILL_CHECKPOINT_DIR`` (distill), else the Hugging Face hub
cache, never the network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from . import exits
from .adapters import project_version
from .cases import make_images
from .goldens import GOLDENS_DIR, sha256

PUBLISHED_DIR = GOLDENS_DIR / "published"
FORMAT = "adaperceiver-published-golden"
FORMAT_VERSION = "1"
BATCH = 2
ENV_VARS = {"classification": "ADAPERCEIVER_CHECKPOINT_DIR",
            "distill": "ADAPERCEIVER_DISTILL_CHECKPOINT_DIR"}
FILES = ("config.json", "model.safetensors")


@dataclass
class PublishedGolden:
    """A recorded file: metadata, images and one expected-output dict per call."""

    path: Path
    model: str
    kind: str
    config_sha256: str
    weights_sha256: str
    images: np.ndarray
    calls: list[dict[str, Any]]
    expected: list[dict[str, np.ndarray]]


def _checkpoint_files(model: str) -> dict[str, Path]:
    """config.json and model.safetensors of a local directory or a hub id (may download)."""
    if Path(model).is_dir():
        return {name: Path(model) / name for name in FILES}
    from huggingface_hub import hf_hub_download

    return {name: Path(hf_hub_download(model, name)) for name in FILES}


def _calls(config: dict[str, Any], kind: str, weights: dict, images: np.ndarray) -> list[dict]:
    """Fixed-budget calls plus, for classification, one well-separated exit per policy."""
    from reference_numpy import classify

    K = config["depth"]
    calls: list[dict[str, Any]] = [{}]
    calls += [{"num_tokens": g} for g in config["mask_token_grans"]]
    calls += [{"mat_dim": m} for m in config["mat_dims"]]
    calls += [{"depth": d} for d in sorted({1, max(1, K // 2), K})]
    if kind == "classification":
        conf = exits.confidence_table(lambda d: classify(weights, config, images, depth=d), K)
        for policy in ("batch_mean", "per_sample"):
            tau = exits.mid_tau(conf, policy)
            if tau is not None:
                calls.append({"depth_tau": round(tau, 4), "exit_policy": policy})
    return calls


def record(model: str, out: Path | None = None) -> Path:
    """Compute the oracle's outputs on ``model``'s weights and write the golden file."""
    from reference_numpy import load_checkpoint, trace

    files = _checkpoint_files(model)
    config, weights = load_checkpoint(files["config.json"].parent)
    kind = "distill" if "output_feat_dim" in config else "classification"
    size = config["img_size"]
    # float16-representable values: the file stays small and float32 ports see them exactly
    images = make_images((BATCH, config["in_channels"], size, size), seed=0)
    images = images.astype(np.float16).astype(np.float32)
    calls = _calls(config, kind, weights, images)
    tensors = {"images": images.astype(np.float16)}
    for i, args in enumerate(calls):
        result = trace(weights, config, images, **args)
        tensors[f"call_{i}.logits"] = result.logits
        tensors[f"call_{i}.exit_depths"] = result.exit_depths
        if result.features is not None and i == 0:
            tensors[f"call_{i}.features"] = result.features
    out = Path(out) if out else PUBLISHED_DIR / f"{Path(model).name}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": model, "kind": kind,
        "config_sha256": sha256(files["config.json"]),
        "weights_sha256": sha256(files["model.safetensors"]),
        "calls": json.dumps(calls),
        "generator": json.dumps({"adaperceiver-reference": project_version(),
                                 "numpy": np.__version__}),
    }
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out),
              metadata=metadata)
    return out


def read(path: Path) -> PublishedGolden:
    """Parse a recorded file; ``ValueError`` if it is not this format."""
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} is not an {FORMAT} version {FORMAT_VERSION} file")
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    calls = json.loads(meta["calls"])
    expected = [{key.split(".", 1)[1]: value for key, value in tensors.items()
                 if key.startswith(f"call_{i}.")} for i in range(len(calls))]
    return PublishedGolden(Path(path), meta["model"], meta["kind"], meta["config_sha256"],
                           meta["weights_sha256"], tensors["images"].astype(np.float32), calls,
                           expected)


def locate_weights(golden: PublishedGolden) -> tuple[Path | None, str]:
    """(checkpoint directory, how it was found) or (None, why not), without network access."""
    env = ENV_VARS[golden.kind]
    if os.environ.get(env):
        directory = Path(os.environ[env])
        if all((directory / name).is_file() for name in FILES):
            return directory, f"${env}"
        return None, f"${env}={directory} lacks {' or '.join(FILES)}"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None, "huggingface_hub is not installed"
    try:
        found = [try_to_load_from_cache(golden.model, name) for name in FILES]
    except ValueError:  # not a valid hub repo id (e.g. a local path recorded elsewhere)
        found = []
    if found and all(isinstance(p, str) for p in found):
        return Path(found[1]).parent, "the Hugging Face hub cache"
    return None, (f"weights of {golden.model} are not on disk: set ${env} to a directory "
                  f"with {' and '.join(FILES)}, or run `huggingface-cli download "
                  f"{golden.model}` where the hub is reachable")
