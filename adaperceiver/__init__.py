"""Fast PyTorch implementation of AdaPerceiver, drop-in for the published checkpoints.

>>> from adaperceiver import ClassificationAdaPerceiver
>>> model = ClassificationAdaPerceiver.from_pretrained("path/or/hub-id")  # doctest: +SKIP
>>> out = model(x, num_tokens=128, mat_dim=416, depth=12)                 # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``import adaperceiver.cli`` (the
command line's argument parsing and ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_SOURCES = {  # public name -> the submodule defining it
    "AdaPerceiverOutput": "model",
    "AnytimeOutput": "anytime",
    "CheckpointError": "hub",
    "ClassificationAdaPerceiver": "model",
    "ConfigError": "config",
    "DistillAdaPerceiver": "model",
    "early_exit": "anytime",
    "flops": "flops",
}
__all__ = ["AdaPerceiverOutput", "AnytimeOutput", "CheckpointError", "ClassificationAdaPerceiver",
           "ConfigError", "DistillAdaPerceiver", "early_exit", "flops"]  # = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'adaperceiver' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package object: importing a submodule binds it to its name on the package, and
    the submodule ``flops`` defines the function ``flops``, which keeps the name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SOURCES and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
