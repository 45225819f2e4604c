"""The machine's float32 GEMM ceiling on the model's own shapes, per backend.

For each linear shape of the published model ((rows, in) x (in, out): q/k/v/proj 832 ->
832, fc1 832 -> 2138, fc2 2138 -> 832, rows = B x N) it times ``y = x W^T`` with every
backend this machine has, best of ``samples`` interleaved calls, as GFLOP/s (2 rows in
out / seconds):

* ``mkl``: ``torch.nn.functional.linear`` (torch's CPU float32 GEMM is MKL's sgemm);
* ``onednn``: ``torch.ops.mkldnn._linear_pointwise`` on the plain weight (oneDNN's GEMM);
* ``openblas``: NumPy's ``x @ W^T`` (NumPy's BLAS, OpenBLAS in the wheels);
* ``mlas``: one ONNX ``MatMul`` against a constant weight in ONNX Runtime (MLAS), with
  torch's intra-op thread count.

A backend that is missing (no oneDNN build, no onnxruntime) is left out, with a line
saying so. The ceiling is the best of them: what no float32 path of that shape can beat
on this machine.

Below each shape, the reduced-precision products the bf16 and int8 engines run, in the
same rounds (``reduced_backends``): ``bf16 onednn`` (``mkldnn._linear_pointwise`` on
bfloat16 x and W packed once by ``mkldnn._reorder_linear_weight``, float32 accumulation:
what inductor's freezing makes of the compiled bf16 path's linears; left out where oneDNN
has no bfloat16 support for the CPU) and ``int8 mlas`` (the one-MatMul graph
through ``onnx.quantize.quantize_int8``: x quantized per call, an int8 weight, float32
rescaling, as the int8 engine runs it), with their rate over the float32 ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .timing import interleaved

LINEARS = {"qkv/proj": (832, 832), "fc1": (832, 2138), "fc2": (2138, 832)}  # name: (in, out)


def _matmul_proto(x: np.ndarray, w_t: np.ndarray) -> Any:
    """``x @ w_t`` as a one-node float32 ONNX graph, the weight a constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.shape[0], w_t.shape[1]])],
        [numpy_helper.from_array(w_t, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(proto)
    return proto


def _mlas(x: np.ndarray, proto: Any) -> Callable[[], object]:
    """One run of ``proto`` on x in ONNX Runtime (MLAS), torch's intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return partial(session.run, None, {"x": x})


class Operands(NamedTuple):
    """x (rows, in) and W (out, in) of one shape, seeded, and their NumPy forms x and W^T."""

    x: torch.Tensor
    w: torch.Tensor
    x_np: np.ndarray
    w_t: np.ndarray  # (in, out), contiguous


def _operands(rows: int, d_in: int, d_out: int) -> Operands:
    """The operands every backend of one shape multiplies (the same seed for each)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, d_in, generator=g), torch.randn(d_out, d_in, generator=g)
    return Operands(x, w, x.numpy(), np.ascontiguousarray(w.numpy().T))


def backends(rows: int, d_in: int, d_out: int) -> tuple[dict[str, Callable[[], object]],
                                                         list[str]]:
    """(name -> zero-argument GEMM call of one shape, lines naming the missing backends)."""
    x, w, x_np, w_t = _operands(rows, d_in, d_out)
    calls: dict[str, Callable[[], object]] = {"mkl": partial(F.linear, x, w)}
    missing = []
    if torch.backends.mkldnn.is_available():
        calls["onednn"] = partial(torch.ops.mkldnn._linear_pointwise, x, w, None, "none", [], "")
    else:
        missing.append("onednn: this torch has no oneDNN")
    calls["openblas"] = partial(np.matmul, x_np, w_t)
    try:
        calls["mlas"] = _mlas(x_np, _matmul_proto(x_np, w_t))
    except ImportError:
        missing.append("mlas: onnxruntime is not installed")
    return calls, missing


def reduced_backends(rows: int, d_in: int, d_out: int) -> tuple[dict[str, Callable[[], object]],
                                                                 list[str]]:
    """``backends`` for the bf16 and int8 products of one shape (module doc)."""
    x, w, x_np, w_t = _operands(rows, d_in, d_out)
    calls: dict[str, Callable[[], object]] = {}
    missing = []
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        packed = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), rows)  # as inductor
        calls["bf16 onednn"] = partial(torch.ops.mkldnn._linear_pointwise, x.bfloat16(), packed,
                                       None, "none", [], "")
    else:
        missing.append("bf16 onednn: oneDNN has no bfloat16 GEMM on this CPU")
    try:
        from ..onnx.quantize import quantize_int8

        calls["int8 mlas"] = _mlas(x_np, quantize_int8(_matmul_proto(x_np, w_t)))
    except ImportError:
        missing.append("int8 mlas: onnxruntime is not installed")
    return calls, missing


def gemm_ceilings(rows: int, samples: int) -> None:
    """Print GFLOP/s per linear shape and backend at ``rows`` rows (B x N)."""
    print(f"float32 GEMM GFLOP/s, {rows} rows, {torch.get_num_threads()} threads, best of "
          f"{samples} interleaved calls:", flush=True)
    for name, (d_in, d_out) in LINEARS.items():
        calls, missing = backends(rows, d_in, d_out)
        reduced, missing_reduced = reduced_backends(rows, d_in, d_out)
        best = {k: min(v) for k, v in interleaved({**calls, **reduced}, samples).items()}
        rates = {k: 2 * rows * d_in * d_out / s / 1e9 for k, s in best.items()}
        fp32 = {k: rates[k] for k in calls}
        top = max(fp32.values())
        cells = ", ".join(f"{k} {r:.0f}" for k, r in fp32.items())
        print(f"  {name:<8} ({rows} x {d_in}) x ({d_in} x {d_out}): {cells}; ceiling {top:.0f} "
              f"({max(fp32, key=fp32.get)}), mkl at {rates['mkl'] / top:.0%} of it", flush=True)
        if reduced:
            cells = ", ".join(f"{k} {rates[k]:.0f} ({rates[k] / top:.2f}x)" for k in reduced)
            print(f"  {'':<8} reduced precision: {cells}", flush=True)
        for line in missing + missing_reduced:
            print(f"    left out: {line}")
