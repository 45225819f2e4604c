"""Adapters of the reduced-precision paths of ``adaperceiver.engine`` (bf16 and int8).

* ``conformance.adapters.precision:bfloat16``: the float32 PyTorch model under
  ``torch.autocast("cpu", torch.bfloat16)``, what ``runner(..., engine="torch",
  precision="bf16")`` runs; TOL-1's ``bfloat16`` tolerance.
* ``conformance.adapters.precision:int8``: the ONNX Runtime port with every graph's weight
  matmuls dynamically quantized to int8 (``adaperceiver.onnx.quantize.quantize_int8``),
  what ``runner(..., engine="onnxruntime", precision="int8")`` runs; compute dtype float32
  outside the quantized matmuls, TOL-1's ``int8`` tolerance (``conformance.profiles``,
  8e-2); its worst relative logits error measured 4.0e-2 on the bundled digits test set and
  2.3e-2 at the published size with random weights (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..protocol import Capabilities
from .onnxruntime import OnnxRuntimeAdapter
from .torch_port import TorchAdapter


class Int8Adapter(OnnxRuntimeAdapter):
    """The ONNX Runtime port running int8-quantized graphs (see the module doc)."""

    def __init__(self, max_graphs: int = 64, threads: int = 1):
        super().__init__(max_graphs, threads)
        from adaperceiver.onnx.quantize import quantize_int8

        self._quantize = quantize_int8
        base = self.capabilities
        self.capabilities = Capabilities(
            name="adaperceiver ONNX int8 (onnxruntime quantize_dynamic)", version=base.version,
            dtype="int8", per_sample_width=False, exit_policies=base.exit_policies,
            anytime=True, stages=False, images_arg=base.images_arg, versions=base.versions)

    def prepare(self, proto: Any) -> Any:
        return self._quantize(proto)


class AutocastAdapter(TorchAdapter):
    """The float32 PyTorch model called under bfloat16 autocast (compute dtype bfloat16)."""

    def __init__(self) -> None:
        super().__init__("float32")
        self.capabilities = replace(self.capabilities, name="adaperceiver (PyTorch, bfloat16 "
                                    "autocast)", dtype="bfloat16")

    def _forward(self, model: Any, images: np.ndarray, call_args: dict, stages: bool) -> Any:
        with self._torch.autocast("cpu", self._torch.bfloat16):
            return super()._forward(model, images, call_args, stages)

    def anytime(self, model: Any, images: np.ndarray, **call_args: Any) -> dict:
        with self._torch.autocast("cpu", self._torch.bfloat16):
            return super().anytime(model, images, **call_args)


def bfloat16() -> AutocastAdapter:
    return AutocastAdapter()


def int8() -> Int8Adapter:
    return Int8Adapter()
