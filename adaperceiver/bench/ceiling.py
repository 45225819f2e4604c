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
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from .timing import interleaved

LINEARS = {"qkv/proj": (832, 832), "fc1": (832, 2138), "fc2": (2138, 832)}  # name: (in, out)


def _mlas(x: np.ndarray, w_t: np.ndarray) -> Callable[[], object]:
    """``x @ w_t`` as a one-node ONNX graph in ONNX Runtime (the weight a constant)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.shape[0], w_t.shape[1]])],
        [numpy_helper.from_array(w_t, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(proto)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return partial(session.run, None, {"x": x})


def backends(rows: int, d_in: int, d_out: int) -> tuple[dict[str, Callable[[], object]],
                                                         list[str]]:
    """(name -> zero-argument GEMM call of one shape, lines naming the missing backends)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, d_in, generator=g), torch.randn(d_out, d_in, generator=g)
    calls: dict[str, Callable[[], object]] = {"mkl": partial(F.linear, x, w)}
    missing = []
    if torch.backends.mkldnn.is_available():
        calls["onednn"] = partial(torch.ops.mkldnn._linear_pointwise, x, w, None, "none", [], "")
    else:
        missing.append("onednn: this torch has no oneDNN")
    x_np, w_t = x.numpy(), np.ascontiguousarray(w.numpy().T)  # (in, out)
    calls["openblas"] = partial(np.matmul, x_np, w_t)
    try:
        calls["mlas"] = _mlas(x_np, w_t)
    except ImportError:
        missing.append("mlas: onnxruntime is not installed")
    return calls, missing


def gemm_ceilings(rows: int, samples: int) -> None:
    """Print GFLOP/s per linear shape and backend at ``rows`` rows (B x N)."""
    print(f"float32 GEMM GFLOP/s, {rows} rows, {torch.get_num_threads()} threads, best of "
          f"{samples} interleaved calls:", flush=True)
    for name, (d_in, d_out) in LINEARS.items():
        calls, missing = backends(rows, d_in, d_out)
        best = {k: min(v) for k, v in interleaved(calls, samples).items()}
        rates = {k: 2 * rows * d_in * d_out / s / 1e9 for k, s in best.items()}
        top = max(rates.values())
        cells = ", ".join(f"{k} {r:.0f}" for k, r in rates.items())
        print(f"  {name:<8} ({rows} x {d_in}) x ({d_in} x {d_out}): {cells}; ceiling {top:.0f} "
              f"({max(rates, key=rates.get)}), mkl at {rates['mkl'] / top:.0%} of it", flush=True)
        for line in missing:
            print(f"    left out: {line}")
