"""Goldens of the published checkpoints (GOLD-1, second part): record, locate and read.

``record`` (with a progress bar and ETA; an interrupted recording resumes from
``<out>.partial/``) runs the oracle on the real weights (``reference_numpy.load_checkpoint``:
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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

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


def _fixed_calls(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The default call, every granularity, every width of ``mat_dims``, depths 1, K/2, K."""
    K = config["depth"]
    calls: list[dict[str, Any]] = [{}]
    calls += [{"num_tokens": g} for g in config["mask_token_grans"]]
    calls += [{"mat_dim": m} for m in config["mat_dims"]]
    calls += [{"depth": d} for d in sorted({1, max(1, K // 2), K})]
    return calls


class _Resumable:
    """Finished oracle runs of one recording, kept in ``<out>.partial/`` until it completes.

    Each unit of work (a fixed-depth run for the exit thresholds, a recorded call) is
    saved as ``<name>.safetensors`` when done, so an interrupted ``record`` resumes where
    it stopped. The folder is tied to the weights' sha256 and is discarded otherwise.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = directory
        stamp = directory / "weights.sha256"
        if directory.is_dir() and (not stamp.is_file() or stamp.read_text() != key):
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)

    def done(self) -> int:
        return len(list(self.directory.glob("*.safetensors")))

    def get(self, name: str, compute, bar) -> dict[str, np.ndarray]:
        """The saved tensors of unit ``name``, or ``compute()`` saved now (and counted)."""
        path = self.directory / f"{name}.safetensors"
        if path.is_file():
            return load_file(str(path))
        tensors = {k: np.ascontiguousarray(v) for k, v in compute().items() if v is not None}
        save_file(tensors, str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").replace(path)  # atomic: an interrupt never leaves half a unit
        bar.update(1)
        return tensors

    def finish(self) -> None:
        shutil.rmtree(self.directory)


def record(model: str, out: Path | None = None, *, progress: bool = True) -> Path:
    """Compute the oracle's outputs on ``model``'s weights and write the golden file.

    Prints a progress bar with an ETA (``progress``) and resumes an interrupted
    recording of the same weights from ``<out>.partial/``.
    """
    from tqdm import tqdm

    from reference_numpy import classify, load_checkpoint, trace

    files = _checkpoint_files(model)
    config, weights = load_checkpoint(files["config.json"].parent)
    kind = "distill" if "output_feat_dim" in config else "classification"
    size, K = config["img_size"], config["depth"]
    out = Path(out) if out else PUBLISHED_DIR / f"{Path(model).name}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    weights_sha256 = sha256(files["model.safetensors"])
    work = _Resumable(out.with_name(out.name + ".partial"), weights_sha256)
    # float16-representable values: the file stays small and float32 ports see them exactly
    images = make_images((BATCH, config["in_channels"], size, size), seed=0)
    images = images.astype(np.float16).astype(np.float32)
    calls = _fixed_calls(config)
    exit_runs = K if kind == "classification" else 0
    with tqdm(total=exit_runs + len(calls) + (2 if exit_runs else 0), initial=work.done(),
              desc=f"recording {Path(model).name}", unit="run", disable=not progress) as bar:
        if exit_runs:  # fixed-depth runs that place one well-separated threshold per policy
            conf = exits.confidence_table(lambda d: work.get(f"depth_{d}", lambda: {
                "logits": classify(weights, config, images, depth=d)}, bar)["logits"], K)
            for policy in ("batch_mean", "per_sample"):
                tau = exits.mid_tau(conf, policy)
                if tau is not None:
                    calls.append({"depth_tau": round(tau, 4), "exit_policy": policy})
            bar.total = exit_runs + len(calls)
            bar.refresh()
        tensors = {"images": images.astype(np.float16)}
        for i, args in enumerate(calls):
            result = work.get(f"call_{i}", lambda args=args: _traced(
                trace(weights, config, images, **args)), bar)
            tensors[f"call_{i}.logits"] = result["logits"]
            tensors[f"call_{i}.exit_depths"] = result["exit_depths"]
            if "features" in result and i == 0:
                tensors[f"call_{i}.features"] = result["features"]
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": model, "kind": kind,
        "config_sha256": sha256(files["config.json"]),
        "weights_sha256": weights_sha256,
        "calls": json.dumps(calls),
        "generator": json.dumps({"adaperceiver-reference": project_version(),
                                 "numpy": np.__version__}),
    }
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out),
              metadata=metadata)
    work.finish()
    return out


def _traced(result) -> dict[str, np.ndarray | None]:
    return {"logits": result.logits, "exit_depths": result.exit_depths,
            "features": result.features}


def read(path: Path) -> PublishedGolden:
    """Parse a recorded file; ``ValueError`` if it is not this format."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:  # SafetensorError, OSError: say which file
        raise ValueError(f"published golden {path} cannot be read: "
                         f"{type(error).__name__}: {error}") from error
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an {FORMAT} version {FORMAT_VERSION} file")
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
