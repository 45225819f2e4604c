"""Adapters of the implementations in this repository (``--impl conformance.adapters.X:factory``).

* ``conformance.adapters.oracle:factory``: the float64 NumPy oracle itself (a self-check).
* ``conformance.adapters.torch_port:float32`` / ``:float64``: the PyTorch model.
* ``conformance.adapters.onnxruntime:factory``: the exported graphs in ONNX Runtime.
* ``conformance.adapters.precision:bfloat16`` / ``:int8``: the reduced-precision paths of
  ``adaperceiver.engine`` (bfloat16 autocast; int8-quantized ONNX graphs).

They are also worked examples of the protocol in ``conformance.protocol``.
"""

from importlib.metadata import PackageNotFoundError, version


def project_version() -> str:
    """The installed version of this repository's distribution (adaperceiver-reference)."""
    try:
        return version("adaperceiver-reference")
    except PackageNotFoundError:
        return "unknown (not installed)"
