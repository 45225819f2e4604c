"""Factories that cannot give an adapter (robustness finding F10, N7): each must end the run
with one ``ERROR: conformance: ...`` line and exit status 4, never a pytest INTERNALERROR."""

from __future__ import annotations

import sys
from dataclasses import replace

from conformance.adapters.torch_port import TorchAdapter


def raises():
    raise RuntimeError("no accelerator found")


def needs_arguments(device):
    return TorchAdapter("float32")


def exits():
    sys.exit(0)


def returns_str():
    return "adapter"


def bad_dtype():
    adapter = TorchAdapter("float32")
    adapter.capabilities = replace(adapter.capabilities, dtype="float7")
    return adapter
