"""The anytime grid through ONNX Runtime: ``OnnxAnytime(model).anytime(x, ...)`` returns what
``model.anytime(x, ...)`` returns (ANY-1), computed by an exported anytime graph.

Each (N, token_grans, FFN width m, image size) is exported once, on first use, as one
anytime graph (``export_onnx(..., anytime=True)``: output ``grid`` (B, K, G, C), entry
[b, l, j] = the logits at depth l + 1 with the first G[j] of the N latents, one pass under
the prefix property ANY-3, the exact fallback ANY-4 otherwise), optionally with its weight
MatMuls quantized to int8 (``quantize="int8"``, ``adaperceiver.onnx.quantize``), and kept
in an ONNX Runtime session for the life of the object. ``sweep`` and ``demo`` evaluate their
whole budget grid from one such graph per width (``adaperceiver.engine.anytime_model``);
confidence early exit is then derived from ``grid[:, :, -1]`` on the host (ANY-6), as for
the torch model.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..anytime import AnytimeOutput, one_pass_exact
from ..flops import anytime_flops
from ..model import ClassificationAdaPerceiver
from .export import GraphConfig, export_onnx, graph_config
from .quantize import QUANTIZE, quantize_int8
from .session import OnnxGraph, check_images


class OnnxAnytime:
    """``anytime(x, num_tokens, mat_dim, token_grans)`` of ``model`` (float32; each graph is
    a snapshot of the weights when it was exported) through ONNX Runtime's CPU provider
    with ``threads`` intra-op threads (None: torch's thread count). ``quantize``: None
    (float32) or "int8". ``setup_seconds`` sums the export (and quantization) time of the
    graphs made so far. A float32 object keeps its graphs' ModelProtos (``protos``) so
    that ``quantized`` can derive int8 ones."""

    def __init__(self, model: ClassificationAdaPerceiver, *, quantize: str | None = None,
                 threads: int | None = None):
        if quantize not in (None, *QUANTIZE):
            raise ValueError(f"quantize must be one of {list(QUANTIZE)} or None, got "
                             f"{quantize!r}")
        self.model = model
        self.quantize = quantize
        self.threads = torch.get_num_threads() if threads is None else threads
        self.graphs: dict[GraphConfig, OnnxGraph] = {}
        self.protos: dict[GraphConfig, Any] = {}  # float32 graphs, kept for ``quantized``
        self.setup_seconds = 0.0

    def graph(self, num_tokens: int | None = None, mat_dim: int | None = None,
              token_grans: list[int] | None = None,
              image_size: tuple[int, int] | None = None) -> OnnxGraph:
        """The session of this configuration's anytime graph, exported on first use
        (arguments checked as ``export_onnx`` checks them: one int width, no per-sample
        list)."""
        gc, _ = graph_config(self.model, num_tokens=num_tokens, mat_dim=mat_dim,
                             image_size=image_size, token_grans=token_grans, anytime=True)
        if gc not in self.graphs:
            start = time.perf_counter()
            proto = export_onnx(self.model, None, num_tokens=num_tokens, mat_dim=mat_dim,
                                image_size=gc.image_size, token_grans=token_grans,
                                anytime=True).proto
            if self.quantize is None:
                self.protos[gc] = proto
            self._add(gc, proto, start)
        return self.graphs[gc]

    def _add(self, gc: GraphConfig, proto: Any, start: float) -> None:
        """Open ``proto`` (quantized first when this object is int8) as ``gc``'s session."""
        if self.quantize is not None:
            proto = quantize_int8(proto)
        self.graphs[gc] = OnnxGraph(proto, threads=self.threads)
        self.setup_seconds += time.perf_counter() - start

    def quantized(self) -> OnnxAnytime:
        """An int8 ``OnnxAnytime`` of the same model whose graphs for the configurations
        exported here so far are quantized from this object's float32 graphs instead of
        exported again (bundled model, one width: export 23 s, quantization 0.2 s on the
        loaded 2-core CPU, docs/performance.md)."""
        if self.quantize is not None:
            raise ValueError(f"quantized() needs a float32 OnnxAnytime, this one is "
                             f"{self.quantize}")
        int8 = OnnxAnytime(self.model, quantize="int8", threads=self.threads)
        for gc, proto in self.protos.items():
            int8._add(gc, proto, time.perf_counter())
        return int8

    def anytime(self, x: Tensor | np.ndarray, num_tokens: int | None = None,
                mat_dim: int | None = None,
                token_grans: list[int] | None = None) -> AnytimeOutput:
        """The grid of ``model.anytime`` (logits (B, K, G, C) float32, on x's device when x
        is a tensor); images are checked as ``OnnxGraph.run`` checks them (ARG-7, ARG-8)."""
        c = self.model.config
        images = x.detach().cpu().numpy() if isinstance(x, Tensor) else x
        H, W = check_images(images, c["in_channels"], c["patch_size"]).shape[2:]
        graph = self.graph(num_tokens, mat_dim, token_grans, (H, W))
        logits = torch.from_numpy(graph.run(images)["grid"])  # (B, K, G, C)
        if isinstance(x, Tensor):
            logits = logits.to(x.device)
        gc = graph.graph
        cost = anytime_flops(c, num_tokens=gc.num_tokens, mat_dim=gc.mat_dim,
                             token_grans=list(gc.token_grans), image_size=(H, W))
        return AnytimeOutput(logits, tuple(range(1, gc.depth + 1)), gc.granularities,
                             cost.entries / 1e9, cost.grid / 1e9,
                             one_pass_exact(c, gc.num_tokens))

    def __repr__(self) -> str:
        return (f"OnnxAnytime(quantize={self.quantize!r}, threads={self.threads}, "
                f"graphs={len(self.graphs)})")

