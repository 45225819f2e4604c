"""int8 graphs: ONNX Runtime's dynamic quantization of an exported float32 graph.

``quantize_int8(proto)`` runs ``onnxruntime.quantization.quantize_dynamic`` with its
defaults: every MatMul whose B input is a weight (``MatMulConstBOnly``, so the attention
products q k^T and p v stay float32) becomes ``DynamicQuantizeLinear`` of the activation
(uint8, per tensor, range taken from each call's values) and ``MatMulInteger`` against the
weight quantized once to int8 per tensor (symmetric), with float32 rescaling after; norms,
softmax, GELU and residuals stay float32. Per-channel weights were tried and not kept: ONNX
Runtime's ``MatMulInteger`` rejects the per-column zero points the quantizer writes for
the exported (batched) weight MatMuls. Measured errors and speed: docs/performance.md.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

QUANTIZE = ("int8",)  # the --quantize choices


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs an advice ("consider pre-processing") on the root logger at
    WARNING for every graph; hide records below ERROR for the duration of one call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(proto: Any) -> Any:
    """A copy of the float32 ``proto`` with its weight MatMuls dynamically quantized to int8
    (see the module doc); metadata (config, graph configuration) is kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        src, out = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quantize_dynamic(src, out, weight_type=QuantType.QInt8)
        quantized = onnx.load(str(out))
    kept = {p.key for p in quantized.metadata_props}
    for prop in proto.metadata_props:
        if prop.key not in kept:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
    return quantized
