"""Adapter for the PyTorch model (``adaperceiver``) in float32 or float64.

``--impl conformance.adapters.torch_port:float32`` is what this project's CI runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import PREPROCESSING, Capabilities
from . import project_version


class TorchAdapter:
    """Every capability; the model runs in ``dtype`` on the CPU under inference mode."""

    def __init__(self, dtype: str) -> None:
        import torch

        import adaperceiver

        self._torch = torch
        self._dtype = getattr(torch, dtype)
        self._models = adaperceiver
        self.capabilities = Capabilities(
            name="adaperceiver (PyTorch)",
            version=project_version(),
            dtype=dtype, stages=True, anytime=True, images_arg="x", preprocessing=PREPROCESSING,
            versions={"torch": torch.__version__, "numpy": np.__version__})

    def load(self, checkpoint_dir: str) -> Any:
        from adaperceiver.hub import read_config

        # the model's own safe reader (CKPT-8: a regular file of at most 1 MiB, no repeated
        # keys), so a FIFO or a directory named config.json is reported, never waited on
        config = read_config(Path(checkpoint_dir) / "config.json")
        cls = (self._models.DistillAdaPerceiver if "output_feat_dim" in config
               else self._models.ClassificationAdaPerceiver)
        return cls.from_pretrained(checkpoint_dir).to(self._dtype).eval()

    def _forward(self, model: Any, images: np.ndarray, call_args: dict, stages: bool) -> Any:
        with self._torch.inference_mode():
            x = self._torch.tensor(np.asarray(images), dtype=self._dtype)
            return model(x, return_stages=stages, **call_args)

    def classify(self, model: Any, images: np.ndarray, **call_args: Any) -> dict:
        out = self._forward(model, images, call_args, stages=False)
        return {"logits": out.logits.double().numpy(), "exit_depths": out.exit_depths.numpy()}

    def distill(self, model: Any, images: np.ndarray, **call_args: Any) -> dict:
        out = self._forward(model, images, call_args, stages=False)
        return {"logits": out.logits.double().numpy(), "features": out.features.double().numpy()}

    def stages(self, model: Any, images: np.ndarray, **call_args: Any) -> dict[str, np.ndarray]:
        out = self._forward(model, images, call_args, stages=True)
        return {name: t.double().numpy() for name, t in out.stages.items()}

    def anytime(self, model: Any, images: np.ndarray, **call_args: Any) -> dict:
        with self._torch.inference_mode():
            x = self._torch.tensor(np.asarray(images), dtype=self._dtype)
            grid = model.anytime(x, **call_args)
        return {"logits": grid.logits.double().numpy(),
                "granularities": np.array(grid.granularities)}


    def preprocess(self, kind: str, image: np.ndarray, size: int) -> np.ndarray:
        """``adaperceiver.preprocess``: PRE-1..3 (``imagenet``) or PRE-5 (``digits``)."""
        from adaperceiver import preprocess

        tensor = self._torch.from_numpy(np.ascontiguousarray(image))
        x = preprocess.digits_image(tensor) if kind == "digits" else preprocess.imagenet_eval(
            tensor, size)
        return x.double().numpy()


def float32() -> TorchAdapter:
    return TorchAdapter("float32")


def float64() -> TorchAdapter:
    return TorchAdapter("float64")
