"""Adapter for the NumPy oracle (``reference_numpy``): the suite checked against its own source.

Useful as a self-test of the suite and as the smallest example of an adapter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..protocol import PREPROCESSING, Capabilities
from . import project_version


class OracleAdapter:
    """Every capability; float64; stages from ``reference_numpy.trace``."""

    def __init__(self) -> None:
        import reference_numpy

        self._oracle = reference_numpy
        self.capabilities = Capabilities(
            name="reference_numpy", version=project_version(),
            dtype="float64", stages=True, anytime=True, preprocessing=PREPROCESSING,
            versions={"numpy": np.__version__})

    def load(self, checkpoint_dir: str) -> tuple[dict, dict]:
        return self._oracle.load_checkpoint(checkpoint_dir)

    def classify(self, handle: tuple[dict, dict], images: np.ndarray, **call_args: Any) -> dict:
        config, weights = handle
        result = self._oracle.trace(weights, config, images, **call_args)
        return {"logits": result.logits, "exit_depths": result.exit_depths}

    def distill(self, handle: tuple[dict, dict], images: np.ndarray, **call_args: Any) -> dict:
        config, weights = handle
        logits, features = self._oracle.distill(weights, config, images, **call_args)
        return {"logits": logits, "features": features}

    def stages(self, handle: tuple[dict, dict], images: np.ndarray,
               **call_args: Any) -> dict[str, np.ndarray]:
        config, weights = handle
        return self._oracle.trace(weights, config, images, **call_args).stages

    def anytime(self, handle: tuple[dict, dict], images: np.ndarray, **call_args: Any) -> dict:
        config, weights = handle
        grid = self._oracle.anytime(weights, config, images, **call_args)
        return {"logits": grid.logits, "granularities": np.array(grid.granularities)}


    def preprocess(self, kind: str, image: np.ndarray, size: int) -> np.ndarray:
        """PRE-1..3 (``imagenet``, to ``size``) or PRE-5 (``digits``, 8 x 8)."""
        from reference_numpy import preprocess

        if kind == "digits":
            return preprocess.digits_image(image)
        return preprocess.imagenet_eval(image, size)


def factory() -> OracleAdapter:
    return OracleAdapter()
