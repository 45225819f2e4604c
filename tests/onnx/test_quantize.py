"""``export-onnx --quantize int8`` and ``adaperceiver.onnx.quantize.quantize_int8``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli import main
from adaperceiver.digits import BUNDLED_MODEL, DIGITS_MODEL, load_digits
from adaperceiver.onnx import OnnxGraph, export_onnx
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
