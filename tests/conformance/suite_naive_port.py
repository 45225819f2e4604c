"""A port with the loader and argument checks a hurried porter writes (issue 25 items 8, 13).

``factory``: the oracle's forward pass behind a naive loader and lax arguments:

* ``load`` reads ``config.json`` with ``json.load`` and ``model.safetensors`` with
  ``safetensors.numpy.load_file``, stores the tensors as float32 and checks nothing: NaN
  weights, extra keys and a ``depth`` of 10^9 load (CKPT-5, CKPT-7), an F64 value beyond
  float32 becomes +inf (CKPT-9), a FIFO named ``config.json`` blocks (CKPT-8);
* ``exit_policy`` is checked only when ``depth_tau`` is given (ARG-6 vs EXIT-4);
* ``depth_tau`` for a distill model is a ``ValueError`` (ARG-4 says ``TypeError``);
* no preprocessing (PRE-1..3 and PRE-5 skip with the reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import reference_numpy
from conformance.protocol import Capabilities


class NaivePort:
    capabilities = Capabilities(name="naive loader", version="0", dtype="float32")

    def load(self, checkpoint_dir: str) -> tuple[dict, dict]:
        from safetensors.numpy import load_file

        with open(Path(checkpoint_dir) / "config.json") as f:
            config = json.load(f)
        tensors = load_file(str(Path(checkpoint_dir) / "model.safetensors"))
        with np.errstate(over="ignore"):
            return config, {k: v.astype(np.float32).astype(np.float64)
                            for k, v in tensors.items()}

    def classify(self, handle: tuple[dict, dict], images: np.ndarray, **call_args: Any) -> dict:
        config, weights = handle
        if call_args.get("depth_tau") is None:
            call_args.pop("exit_policy", None)  # "only matters with depth_tau"
        with np.errstate(all="ignore"):
            result = reference_numpy.trace(weights, config, images, **call_args)
        return {"logits": result.logits, "exit_depths": result.exit_depths}

    def distill(self, handle: tuple[dict, dict], images: np.ndarray, **call_args: Any) -> dict:
        config, weights = handle
        for name in ("depth_tau", "exit_policy"):
            if name in call_args:
                raise ValueError(f"{name} is not allowed for a distill model")
        logits, features = reference_numpy.distill(weights, config, images, **call_args)
        return {"logits": logits, "features": features}


def factory() -> NaivePort:
    return NaivePort()
