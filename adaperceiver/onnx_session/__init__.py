"""Deprecated alias of ``adaperceiver.onnx.session`` (moved after 0.1.0; kept for one release).

``from adaperceiver.onnx_session import OnnxGraph`` keeps working for this release with a
``FutureWarning``; import ``adaperceiver.onnx`` instead. It is a package, not a file, so that
version control follows the move of the module.
"""

import warnings

from ..onnx import session as _moved

warnings.warn("adaperceiver.onnx_session moved to adaperceiver.onnx.session (from "
              "adaperceiver.onnx import OnnxGraph); the old path is removed in the next release",
              FutureWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_moved, name)
