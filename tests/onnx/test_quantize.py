"""``export-onnx --quantize int8`` and ``adaperceiver.onnx.quantize.quantize_int8``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli import main
from adaperceiver.digits import BUNDLED_MODEL, DIGITS_MODEL, load_digits
from adaperceiver.onnx import OnnxGraph, export_onnx
from adaperceiver.onnx.quantize import pixel_products, quantize_int8
from conformance.tolerances import RTOL

pytest.importorskip("onnxruntime")


def test_unknown_quantize_value_names_the_argument():
    with pytest.raises(ValueError, match=r"quantize must be one of \['int8'\] or None, got 'int4'"):
        export_onnx(BUNDLED_MODEL, None, quantize="int4")


@pytest.mark.slow  # one export of the digits model: 5-60 s depending on the machine's load
def test_cli_writes_an_int8_graph_that_runs(tmp_path, capsys):
    """The written graph has integer matmuls, keeps the metadata OnnxGraph needs, and its
    logits are within RTOL["int8"] of the float32 model on the digits test images."""
    out = tmp_path / "digits-int8.onnx"
    assert main(["export-onnx", "--checkpoint", str(DIGITS_MODEL), "--out", str(out),
                 "--quantize", "int8"]) == 0
    proto = onnx.load(str(out))
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in proto.graph.node}
    x, _ = load_digits("test")
    got = OnnxGraph(out, threads=1).run(x)["logits"]
    with torch.inference_mode():
        ref = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL)(torch.from_numpy(x))
    ref = ref.logits.double().numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() <= RTOL["int8"]
    assert "wrote" in capsys.readouterr().out


def _constant(graph: onnx.GraphProto) -> set[str]:
    """The tensors computed from initializers alone (a constant subgraph)."""
    known = {t.name for t in graph.initializer}
    for node in graph.node:  # topological order
        if all(name in known for name in node.input if name):
            known.update(node.output)
    return known


def test_every_weight_matmul_but_the_pixels_is_quantized():
    """Below full width fc1 and fc2 take sliced (and transposed) weights; after quantization
    no float32 MatMul has a constant B input except the patch embedding's, which multiplies
    the raw pixels (a per-tensor uint8 range over pixels would erase all but the largest)."""
    model = ClassificationAdaPerceiver(**rn.tiny_config()).eval()
    proto = export_onnx(model, None, num_tokens=8, mat_dim=8, depth=2).proto
    quantized = quantize_int8(proto)
    graph = quantized.graph
    constant = _constant(graph)
    float_weights = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in constant]
    assert [n.name for n in float_weights] == pixel_products(graph)
    assert len(float_weights) == 1
    (pixels,) = float_weights
    weights = {t.name: list(t.dims) for t in graph.initializer}
    c = rn.tiny_config()
    assert weights[pixels.input[1]] == [c["in_channels"] * c["patch_size"] ** 2, c["embed_dim"]]
    # 2 blocks x (q, k, v, proj, fc1, fc2) + the read and write heads' projections
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) >= 12
    assert {p.key for p in proto.metadata_props} <= {p.key for p in quantized.metadata_props}


def test_a_graph_without_images_has_every_weight_matmul_quantized():
    """``pixel_products`` follows the export's ``images`` input only: a one-MatMul graph fed
    by another input (the GEMM ceiling's) is quantized, and its product stays close."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16), dtype=np.float32)
    w = rng.standard_normal((16, 8), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
        [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert pixel_products(proto.graph) == []
    quantized = quantize_int8(proto)
    assert "MatMulInteger" in {n.op_type for n in quantized.graph.node}
    import onnxruntime as ort

    got = ort.InferenceSession(quantized.SerializeToString()).run(None, {"x": x})[0]
    assert np.abs(got - x @ w).max() / np.abs(x @ w).max() <= RTOL["int8"]
