"""The NumPy oracle as a separate process behind the subprocess protocol (a worked example).

    python -m conformance.examples.oracle_server     # reads requests on stdin

This is what a C++, Rust or Swift port implements, in the smallest form: a loop
that reads one JSON request per line from stdin and writes one JSON response per
line to stdout (and nothing else to stdout: logs go to stderr). Requests:

    {"op": "hello", "protocol": "adaperceiver-port-protocol", "protocol_version": 1}
        -> {"ok": true, "capabilities": {"name": ..., "version": ..., "dtype": ..., ...}}
    {"op": "load", "checkpoint": DIR}
        -> {"ok": true, "handle": H}                 H: any string naming the loaded model
    {"op": "classify" | "distill" | "stages" | "anytime", "handle": H,
     "images": FILE.npy, "args": {...}, "out_dir": DIR}
        -> {"ok": true, "outputs": {NAME: FILE.npy, ...}}   files written under out_dir
    {"op": "preprocess", "kind": "imagenet" | "digits", "image": FILE.npy, "size": S,
     "out_dir": DIR}                                 (optional, when declared)
        -> {"ok": true, "outputs": {"x": FILE.npy}}
    {"op": "exit"}                                   no response; the process exits

Any failure (an invalid argument, ARG-1..8) is a response, not a crash:
{"ok": false, "type": "ValueError" | "TypeError" | ..., "error": "one line naming the
argument, the value and what is allowed"}. The field list of every message is in
``conformance/README.md`` ("Ports behind a process: the subprocess protocol").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import reference_numpy
import reference_numpy.preprocess
from conformance.export import save_npy

CAPABILITIES = {  # conformance.protocol.Capabilities fields, as JSON
    "name": "reference_numpy (subprocess)", "version": "1", "dtype": "float64",
    "stages": True, "anytime": True, "preprocessing": ["imagenet", "digits"],
    "versions": {"numpy": np.__version__},
}


def run_model(op: str, model: tuple[dict, dict], images: np.ndarray,
              args: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays one model request returns, by output name (the adapter contract's names)."""
    config, weights = model
    if op == "classify":
        result = reference_numpy.trace(weights, config, images, **args)
        return {"logits": result.logits, "exit_depths": result.exit_depths}
    if op == "distill":
        logits, features = reference_numpy.distill(weights, config, images, **args)
        return {"logits": logits, "features": features}
    if op == "stages":
        return dict(reference_numpy.trace(weights, config, images, **args).stages)
    grid = reference_numpy.anytime(weights, config, images, **args)
    return {"logits": grid.logits, "granularities": np.array(grid.granularities)}


def preprocess(kind: str, image: np.ndarray, size: int) -> np.ndarray:
    """PRE-1..3 (``imagenet``, to ``size``) or PRE-5 (``digits``) of a uint8 image."""
    if kind == "digits":
        return reference_numpy.preprocess.digits_image(image)
    return reference_numpy.preprocess.imagenet_eval(image, size)


def handle_request(request: dict[str, Any], models: dict[str, tuple[dict, dict]]) -> dict:
    """The response to one request (``models``: handle -> loaded checkpoint, updated by load)."""
    op = request["op"]
    if op == "hello":
        return {"ok": True, "capabilities": CAPABILITIES}
    if op == "load":
        handle = f"h{len(models)}"
        models[handle] = reference_numpy.load_checkpoint(request["checkpoint"])
        return {"ok": True, "handle": handle}
    if op in ("classify", "distill", "stages", "anytime", "preprocess"):
        if op == "preprocess":
            image = np.load(request["image"], allow_pickle=False)
            arrays = {"x": preprocess(request["kind"], image, request["size"])}
        else:
            images = np.load(request["images"], allow_pickle=False)
            arrays = run_model(op, models[request["handle"]], images, request["args"])
        outputs = {}
        for name, array in arrays.items():
            path = Path(request["out_dir"]) / f"{name}.npy"
            save_npy(path, array)  # little-endian, C order, no pickle
            outputs[name] = str(path)
        return {"ok": True, "outputs": outputs}
    raise ValueError(f"op must be one of hello, load, classify, distill, stages, anytime, "
                     f"preprocess, exit, got {op!r}")


def main() -> int:
    models: dict[str, tuple[dict, dict]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "exit":
            return 0
        try:
            response = handle_request(request, models)
        except Exception as error:  # every failure is answered; the server keeps serving
            response = {"ok": False, "type": type(error).__name__,
                        "error": " ".join(str(error).split())}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
