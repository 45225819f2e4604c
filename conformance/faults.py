"""Known porting faults of the spec's numeric constants, recognised by their signature.

A failure located at a pipeline stage (``conformance.verify``: patches, read, a block ...)
names the stage's clause, not the broken rule. Some rules act in every stage: a port with
LayerNorm eps 1e-5 (NUM-1) or the tanh approximation of GELU (NUM-2) diverges in the
first stage that has a LayerNorm or an FFN. For these typical faults the suite runs the
oracle *with the fault* (the one constant of ``reference_numpy`` swapped for the call, then
restored) and, when the port's outputs match that oracle within tolerance, charges the
fault's clause: the port computes exactly what the fault computes.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


def _tanh_gelu(x: np.ndarray) -> np.ndarray:
    """GELU's tanh approximation x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (not NUM-2)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


@dataclass(frozen=True)
class KnownFault:
    """A typical wrong constant: ``module.name`` of the oracle replaced by ``value``."""

    clause: str
    description: str
    module: str
    name: str
    value: Any

    @contextlib.contextmanager
    def in_oracle(self) -> Iterator[None]:
        """The oracle computes with this fault inside the block (single-threaded use)."""
        module = importlib.import_module(self.module)
        saved = getattr(module, self.name)
        setattr(module, self.name, self.value)
        try:
            yield
        finally:
            setattr(module, self.name, saved)


KNOWN_FAULTS: tuple[KnownFault, ...] = (
    KnownFault("NUM-1", "LayerNorm eps 1e-5 (nn.LayerNorm's default) instead of 1e-6",
               "reference_numpy.ops", "LAYER_NORM_EPS", 1e-5),
    KnownFault("NUM-2", "GELU's tanh approximation instead of the exact erf form",
               "reference_numpy.ops", "gelu", _tanh_gelu),
)
