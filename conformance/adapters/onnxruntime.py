"""Adapter for the ONNX port: graphs exported by ``adaperceiver.onnx.export``, run by ONNX Runtime.

``--impl conformance.adapters.onnxruntime:factory``. Every call runs an exported graph
in ONNX Runtime's CPUExecutionProvider: the first call of a static configuration
(checkpoint config, N, granularities, width, depth, image size) exports it with
``torch.onnx.export(dynamo=True)``; later calls, on this or any other checkpoint of the
same config, reuse that graph with the checkpoint's weights swapped in
(``export_onnx.swap_weights``: the graph's structure never depends on weight values).
Graphs are cached per adapter (bounded LRU, ``max_graphs``), sessions per handle.

Capabilities, and what is not supported, with the reason:

* dtype float32 only: the graphs are exported in float32 (ONNX Runtime's CPU provider
  has no float64 ``Erf`` kernel, so a float64 graph with exact GELU cannot run).
* per-sample width lists: no. A graph bakes in one FFN width (the weights are sliced
  at export); a list is rejected with an error naming ``mat_dim``.
* confidence early exit: both policies, from the anytime graph (logits after every
  depth, ``grid``) and the exit rule applied on the host (``adaperceiver.anytime.
  early_exit``, ANY-6); a graph itself has no data-dependent control flow, so the exit
  saves no compute in ONNX Runtime. The anytime grid itself: yes (``anytime``).
* stages: no. The graphs output what a deployment needs (``logits``, ``features``,
  ``grid``); intermediate stages would need a second graph per configuration.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import EXIT_POLICIES, Capabilities
from . import project_version

CALL_ARGS = {"classification": ("num_tokens", "mat_dim", "depth", "depth_tau", "token_grans",
                                 "exit_policy"),
             "distill": ("num_tokens", "mat_dim", "depth", "token_grans"),
             "anytime": ("num_tokens", "mat_dim", "token_grans")}


class LRU:
    """A bounded least-recently-used mapping (``maxsize`` entries)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, build) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = build()
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Handle:
    """A loaded checkpoint: its config, kind, float32 weights and this handle's sessions."""

    model: Any
    config: dict
    kind: str
    weights: dict[str, np.ndarray]
    sessions: LRU = field(default_factory=lambda: LRU(8))


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


class OnnxRuntimeAdapter:
    """The ONNX port of AdaPerceiver behind the conformance protocol (see the module doc)."""

    def __init__(self, max_graphs: int = 64, threads: int = 1):
        import torch

        from adaperceiver.onnx import export as export_onnx

        self._export = export_onnx
        self._torch = torch
        self.threads = threads
        self.templates = LRU(max_graphs)  # (config, GraphConfig) -> unoptimised ModelProto
        self.exports = 0  # graphs exported so far (the expensive step)
        self.capabilities = Capabilities(
            name="adaperceiver ONNX (onnxruntime CPUExecutionProvider)",
            version=project_version(), dtype="float32", per_sample_width=False,
            exit_policies=frozenset(EXIT_POLICIES), anytime=True, stages=False,
            images_arg="images",
            versions={name: _version(name) for name in ("onnxruntime", "onnx", "onnxscript",
                                                        "torch")} | {
                "opset": str(export_onnx.OPSET)})

    def prepare(self, proto: Any) -> Any:
        """The graph a session runs, from the exported one with the checkpoint's weights
        (float32 here; ``conformance.adapters.precision`` quantizes it)."""
        return proto

    def load(self, checkpoint_dir: str) -> Handle:
        model = self._export.load_model(Path(checkpoint_dir))
        weights = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
        return Handle(model, dict(model.config), self._export.model_kind(model), weights)

    # --- calls ---------------------------------------------------------------------------

    def classify(self, handle: Handle, images: np.ndarray, **call_args: Any) -> dict:
        out, exit_depths = self._call(handle, "classification", images, call_args)
        return {"logits": out["logits"].astype(np.float64), "exit_depths": exit_depths}

    def distill(self, handle: Handle, images: np.ndarray, **call_args: Any) -> dict:
        out, _ = self._call(handle, "distill", images, call_args)
        return {"logits": out["logits"].astype(np.float64),
                "features": out["features"].astype(np.float64)}

    def anytime(self, handle: Handle, images: np.ndarray, **call_args: Any) -> dict:
        """The grid (B, K, G, C) of the anytime graph and its granularities (ANY-1, ANY-2)."""
        self._check(handle, "anytime", images, call_args)
        graph = self._graph(handle, images.shape[2:], **call_args, anytime=True)
        return {"logits": graph.run(images)["grid"].astype(np.float64),
                "granularities": np.array(graph.graph.granularities)}

    def _check(self, handle: Handle, method: str, images: np.ndarray, call_args: dict[str, Any]):
        """ARG-1..8 before any export: unknown keywords, images, then ``parse_call``."""
        from adaperceiver.arguments import parse_call
        from adaperceiver.onnx.session import check_images

        kind = "classification" if method == "anytime" else method
        if method != "anytime" and handle.kind != kind:
            raise ValueError(f"this checkpoint is a {handle.kind} model; call "
                             f"{'distill' if handle.kind == 'distill' else 'classify'}")
        unknown = sorted(set(call_args) - set(CALL_ARGS[method]))
        if unknown:
            raise TypeError(f"unknown argument(s) {unknown} of {method}; allowed: "
                            f"{list(CALL_ARGS[method])}")
        c = handle.config
        check_images(images, c["in_channels"], c["patch_size"])
        probe = self._torch.zeros(images.shape)  # validation only: ARG-2 needs the batch B
        return parse_call(c, probe, **call_args)

    def _call(self, handle: Handle, kind: str, images: np.ndarray,
              call_args: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Check the call (ARG-1..8), run the graph of its configuration; (outputs, exit depths)."""
        call = self._check(handle, kind, images, call_args)
        B = images.shape[0]
        fixed = {k: call_args.get(k) for k in ("num_tokens", "mat_dim", "token_grans")}
        if call.depth_tau is None:
            out = self._graph(handle, images.shape[2:], **fixed, depth=call_args.get("depth"))
            return out.run(images), np.full(B, call.depth, dtype=np.int64)
        from adaperceiver.anytime import early_exit

        grid = self._graph(handle, images.shape[2:], **fixed, anytime=True).run(images)["grid"]
        by_depth = self._torch.from_numpy(grid[:, :, -1])  # (B, K, G, C) -> (B, K, C) at N
        depths, logits = early_exit(by_depth, call.depth_tau, call.exit_policy)
        return {"logits": logits.numpy()[:, None]}, depths.numpy()  # (B, C) -> (B, 1, C)

    def _graph(self, handle: Handle, hw: tuple[int, int], **static: Any):
        """The session for one static configuration, exporting its graph on first use."""
        from adaperceiver.onnx.session import OnnxGraph

        gc, _ = self._export.graph_config(handle.model, image_size=tuple(map(int, hw)), **static)
        # The graph depends on the effective granularities and hidden width only.
        full = gc.hidden == handle.model.hidden
        same = replace(gc, token_grans=(), mat_dim=None, hidden=None if full else gc.hidden)
        key = (json.dumps(handle.config, sort_keys=True), same.to_json())

        def export():
            self.exports += 1
            return self._export.export_onnx(handle.model, None, optimize=False, **{
                **static, "image_size": gc.image_size}).proto

        def session():
            proto = self._export.swap_weights(self.templates.get(key, export), handle.weights)
            return OnnxGraph(self.prepare(proto), threads=self.threads)

        return handle.sessions.get(key, session)


def factory() -> OnnxRuntimeAdapter:
    return OnnxRuntimeAdapter()
