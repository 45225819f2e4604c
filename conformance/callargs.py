"""Call arguments in repros, with their exact Python / NumPy types.

A port may behave differently for ``num_tokens=6`` and ``num_tokens=np.int64(6)``
(upstream's flex-attention path crashes on the latter; spec/divergences.md), so
a repro must record what was really passed. ``encode`` turns call arguments into
JSON, writing every NumPy scalar as ``{"numpy": "<dtype>", "value": <number>}``;
``decode`` rebuilds exactly the same objects. Python ``int``, ``float``, ``str``,
``bool`` and ``None`` stay plain JSON; lists and tuples become lists (element
types preserved); a 1-D NumPy array becomes ``{"numpy_array": dtype, "value": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

NUMPY_SCALAR = "numpy"
NUMPY_ARRAY = "numpy_array"


def encode_value(value: Any) -> Any:
    """One argument value as JSON-ready data that ``decode_value`` turns back into it."""
    if isinstance(value, np.generic):
        return {NUMPY_SCALAR: value.dtype.name, "value": value.item()}
    if isinstance(value, np.ndarray):
        return {NUMPY_ARRAY: value.dtype.name, "value": value.tolist()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"call argument value {value!r} of type {type(value).__name__} "
                    "cannot be recorded in a repro")


def decode_value(data: Any) -> Any:
    """Inverse of ``encode_value``."""
    if isinstance(data, dict) and NUMPY_SCALAR in data:
        return np.dtype(data[NUMPY_SCALAR]).type(data["value"])
    if isinstance(data, dict) and NUMPY_ARRAY in data:
        return np.asarray(data["value"], dtype=data[NUMPY_ARRAY])
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    return data


def encode(call_args: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: encode_value(value)}`` for a call's keyword arguments."""
    return {name: encode_value(value) for name, value in call_args.items()}


def decode(data: Mapping[str, Any]) -> dict[str, Any]:
    """Call keyword arguments from ``encode``'s output."""
    return {name: decode_value(value) for name, value in data.items()}
