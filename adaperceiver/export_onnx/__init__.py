"""Deprecated alias of ``adaperceiver.onnx.export`` (moved after 0.1.0; kept for one release).

``from adaperceiver.export_onnx import export_onnx`` and ``python -m adaperceiver.export_onnx``
keep working for this release with a ``FutureWarning``; import ``adaperceiver.onnx`` instead.
It is a package, not a file, so that version control follows the move of the module.
"""

import warnings

from ..onnx import export as _moved

warnings.warn("adaperceiver.export_onnx moved to adaperceiver.onnx.export (from adaperceiver.onnx "
              "import export_onnx); the old path is removed in the next release",
              FutureWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_moved, name)
