"""int8 graphs: ONNX Runtime's dynamic quantization of an exported float32 graph.

``quantize_int8(proto)`` first runs ONNX Runtime's quantization pre-processing
(``quant_pre_process``), whose constant folding turns the weights the export leaves behind a
Transpose or a Slice (fc1, the Matryoshka-sliced fc2) into initializers, then
``onnxruntime.quantization.quantize_dynamic`` with its defaults: every MatMul whose B input
is a weight (``MatMulConstBOnly``, so the attention products q k^T and p v stay float32)
becomes ``DynamicQuantizeLinear`` of the activation (uint8, per tensor, range taken from
each call's values) and ``MatMulInteger`` against the weight quantized once to int8 per
tensor (symmetric), with float32 rescaling after; norms, softmax, GELU and residuals stay
float32, and so does the patch embedding (``pixel_products``): one activation range per
tensor over raw pixels would erase all but the largest (a pixel at 1e8, allowed by LIM-4,
zeroes the others). Per-channel weights
were tried and not kept: ONNX Runtime's ``MatMulInteger`` rejects the per-column zero
points the quantizer writes for the exported (batched) weight MatMuls. Measured errors and
speed: docs/performance.md.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import defaultdict
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


def pixel_products(graph: Any, images: str = "images") -> list[str]:
    """Names of the MatMul nodes that take the images' values (the patch embedding): the
    first MatMuls reached from the graph input ``images`` (the export's), through any nodes
    but ``Shape`` (whose output carries sizes, not pixel values). None without that input."""
    consumers: dict[str, list[int]] = defaultdict(list)  # tensor -> positions of its readers
    for position, node in enumerate(graph.node):
        for name in node.input:
            consumers[name].append(position)
    found, seen = [], set()
    frontier = [i.name for i in graph.input if i.name == images]
    while frontier:
        for position in consumers[frontier.pop()]:
            node = graph.node[position]
            if position in seen or node.op_type == "Shape":
                continue
            seen.add(position)
            if node.op_type == "MatMul":
                found.append(node.name)
            else:
                frontier.extend(node.output)
    return found


def quantize_int8(proto: Any) -> Any:
    """A copy of the float32 ``proto`` with its weight MatMuls dynamically quantized to int8
    (see the module doc); metadata (config, graph configuration) is kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        src, folded, out = (Path(folder) / f"{name}.onnx" for name in ("fp32", "folded", "int8"))
        src.write_bytes(proto.SerializeToString())
        quant_pre_process(src, folded, skip_symbolic_shape=True)
        pixels = pixel_products(onnx.load(str(folded)).graph)
        quantize_dynamic(folded, out, weight_type=QuantType.QInt8, nodes_to_exclude=pixels)
        quantized = onnx.load(str(out))
    kept = {p.key for p in quantized.metadata_props}
    for prop in proto.metadata_props:
        if prop.key not in kept:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
    return quantized
