"""Measure the numbers behind the precision profiles (``conformance.profiles``).

    python -m conformance.measure_profiles [--cases N] [--out FILE.json]

For each reduced precision the PyTorch model (``adaperceiver``) runs every committed
golden case (``conformance/goldens``, computed by the float64 oracle) and the bundled
digits test split (359 real images, ``adaperceiver.digits``) and the command prints:

* per precision, the largest and the 95th-percentile TOL-1 relative error
  (``conformance.tolerances.errors``) of logits and features over the golden cases;
* on the digits test split, the top-1 agreement with the oracle and the accuracy of
  the port and of the oracle (their difference is the accuracy delta).

Precisions: ``float32``, ``float16`` and ``bfloat16`` cast the model and the images
(``model.to(dtype)``: every operation in that dtype, as a port storing weights in it
does); ``int8`` simulates ONNX Runtime's dynamic quantisation
(``onnxruntime.quantization.quantize_dynamic``) of every linear layer in float32: weights
symmetric int8 per output channel, activations asymmetric uint8 per tensor with a scale
computed at run time, int32 accumulation, then dequantised (attention products, norms and
softmax stay float32). It needs torch; nothing else in the suite does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import callargs
from .goldens import GOLDENS_DIR, case_tensors, load_manifest
from .tolerances import errors

PRECISIONS = ("float32", "bfloat16", "float16", "int8")


@contextlib.contextmanager
def dynamic_int8() -> Iterator[None]:
    """Every ``torch.nn.functional.linear`` runs as ONNX Runtime's dynamic int8 MatMul would:
    W (out, in) -> int8 per output row, x -> uint8 per tensor, integer product, dequantised."""
    import torch
    import torch.nn.functional as F

    linear = F.linear

    def quantised(x, weight, bias=None):
        w_scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127  # (out, 1)
        w_int = torch.round(weight / w_scale).clamp(-127, 127)  # (out, in)
        lo, hi = torch.minimum(x.min(), x.new_zeros(())), torch.maximum(x.max(), x.new_zeros(()))
        x_scale = ((hi - lo) / 255).clamp_min(1e-12)
        zero = torch.round(-lo / x_scale)
        x_int = torch.round(x / x_scale + zero).clamp(0, 255) - zero  # (..., in), exact ints
        y = linear(x_int.double(), w_int.double()).float() * (x_scale * w_scale[:, 0])
        return y if bias is None else y + bias

    F.linear = quantised
    try:
        yield
    finally:
        F.linear = linear


def _runner(precision: str):
    """(model loader, call) for a precision: torch dtype of weights and images."""
    import torch

    import adaperceiver

    dtype = torch.float32 if precision == "int8" else getattr(torch, precision)

    def load(directory: Path):
        config = json.loads((directory / "config.json").read_text())
        cls = (adaperceiver.DistillAdaPerceiver if "output_feat_dim" in config
               else adaperceiver.ClassificationAdaPerceiver)
        return cls.from_pretrained(str(directory)).to(dtype).eval()

    def call(model, images: np.ndarray, call_args: dict) -> dict[str, np.ndarray]:
        with torch.inference_mode(), (dynamic_int8() if precision == "int8"
                                      else contextlib.nullcontext()):
            out = model(torch.tensor(images, dtype=dtype), **call_args)
        result = {"logits": out.logits.double().numpy()}
        if getattr(out, "features", None) is not None:
            result["features"] = out.features.double().numpy()
        return result

    return load, call


def golden_errors(precision: str, limit: int | None = None) -> dict[str, list[float]]:
    """Quantity -> relative errors over the golden cases (one per case)."""
    load, call = _runner(precision)
    manifest = load_manifest()
    found: dict[str, list[float]] = {"logits": [], "features": []}
    models: dict[str, Any] = {}
    for case in manifest["cases"][:limit]:
        name = case["checkpoint"]
        if name not in models:
            models[name] = load(GOLDENS_DIR / manifest["checkpoints"][name]["path"])
        tensors = case_tensors(GOLDENS_DIR, case)
        out = call(models[name], tensors["images"], callargs.decode(case["call_args"]))
        for key in found:
            if key in tensors and key in out:
                found[key].append(errors(out[key], tensors[key])[1])
    return found


def digits_agreement(precision: str) -> dict[str, float]:
    """Top-1 agreement with the oracle and accuracies on the bundled digits test split."""
    from adaperceiver.digits import DIGITS_MODEL, load_digits
    from reference_numpy import classify, load_checkpoint

    images, labels = load_digits("test")
    config, weights = load_checkpoint(DIGITS_MODEL)
    oracle = classify(weights, config, images)[:, 0].argmax(-1)  # (n,)
    load, call = _runner(precision)
    port = call(load(DIGITS_MODEL), images, {})["logits"][:, 0].argmax(-1)  # (n,)
    return {"top1_agreement": float(np.mean(port == oracle)),
            "accuracy": float(np.mean(port == labels)),
            "oracle_accuracy": float(np.mean(oracle == labels)), "images": int(len(labels))}


def measure(precisions: Sequence[str] = PRECISIONS, limit: int | None = None) -> dict[str, Any]:
    """Every number the profiles' docstring quotes, by precision."""
    results = {}
    for precision in precisions:
        errs = golden_errors(precision, limit)
        results[precision] = {
            "goldens": {key: {"max": float(np.max(v)), "p95": float(np.percentile(v, 95)),
                              "cases": len(v)} for key, v in errs.items() if v},
            "digits": digits_agreement(precision)}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.measure_profiles",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=PRECISIONS, action="append",
                        help="measure only this precision (repeatable; default all)")
    parser.add_argument("--cases", type=int, default=None, help="first N golden cases only")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    results = measure(args.precision or PRECISIONS, args.cases)
    for precision, r in results.items():
        g, d = r["goldens"], r["digits"]
        print(f"{precision:9} logits max {g['logits']['max']:.3g} p95 {g['logits']['p95']:.3g}"
              f" | features max {g['features']['max']:.3g} | digits top-1 agreement "
              f"{d['top1_agreement']:.4f}, accuracy {d['accuracy']:.4f} vs oracle "
              f"{d['oracle_accuracy']:.4f} ({d['images']} images)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
