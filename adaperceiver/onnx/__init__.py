"""ONNX: export one static configuration to a graph (``export``, the ``export-onnx`` command)
and run it with ONNX Runtime (``session``). ``from adaperceiver.onnx import export_onnx,
OnnxGraph``; the names load their module on first use (so ``python -m
adaperceiver.onnx.export`` runs the module once)."""

from importlib import import_module

_HOME = {"ExportResult": "export", "GraphConfig": "export", "export_onnx": "export",
         "swap_weights": "export", "OnnxGraph": "session", "check_images": "session"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
