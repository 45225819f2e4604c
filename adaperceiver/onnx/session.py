"""Run an exported graph with ONNX Runtime (CPUExecutionProvider), checking what it is fed.

``OnnxGraph(path_or_proto)`` reads the configuration the exporter recorded in the
model's metadata (``adaperceiver.onnx.export.METADATA_GRAPH``) and ``run(images)`` returns the
outputs by name. A graph is float32 and static in everything but the batch, so
images are checked first (ARG-7, ARG-8, and LIM-4's magnitude bound with the torch path's
own ``arguments.check_values``) and a wrong request is a clear error naming ``images``,
never an ONNX Runtime error. A file that is not a usable AdaPerceiver export is a
``GraphError``; no protobuf, ONNX or ONNX Runtime exception type escapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments import check_values
from ..config import ProblemList
from .export import METADATA_CONFIG, METADATA_GRAPH, GraphConfig


class GraphError(ProblemList):
    """An ONNX file that cannot be used as an AdaPerceiver graph (a ``ValueError``)."""

    def __init__(self, problems: list[str], source: object):
        super().__init__(f"ONNX graph {source}", problems)


def check_images(images: Any, in_channels: int, patch_size: int,
                 size: tuple[int, int] | None = None) -> np.ndarray:
    """ARG-7 for a float32 graph: a finite float32 array (B, C, H, W), B >= 1, C == in_channels,
    H and W positive multiples of patch_size (and equal to ``size`` when given), values
    within LIM-4's bound. Returns it."""
    where = f"(H, W) = {size} (the size this graph was exported for)" if size else (
        f"H, W positive multiples of patch_size {patch_size}")
    allowed = f"a finite float32 array of shape (B, {in_channels}, H, W) with B >= 1 and {where}"
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy.ndarray ({allowed}), got {type(images).__name__}")
    if images.dtype != np.float32:
        raise TypeError(f"images must be {allowed}, got dtype {images.dtype}: the exported "
                        "graphs compute in float32 (ONNX Runtime has no float64 Erf kernel); "
                        "cast with images.astype(numpy.float32)")
    shape = images.shape
    ok = (len(shape) == 4 and shape[0] >= 1 and shape[1] == in_channels
          and all(s >= 1 and s % patch_size == 0 for s in shape[2:]))
    if not ok or (size is not None and tuple(shape[2:]) != tuple(size)):
        raise ValueError(f"images must be {allowed}, got shape {shape}")
    finite = bool(np.isfinite(images).all())
    check_values("images", allowed, finite, float(np.abs(images).max()) if finite else 0.0)
    return images


class OnnxGraph:
    """An exported AdaPerceiver graph in an ONNX Runtime session on the CPU.

    ``config`` is the checkpoint's config, ``graph`` the baked-in ``GraphConfig``.
    ``threads`` sets intra-op threads (None: ONNX Runtime's default, all cores).
    """

    def __init__(self, path_or_proto: str | Path | Any, threads: int | None = None,
                 optimization: str = "all"):
        import onnx
        import onnxruntime as ort

        if isinstance(path_or_proto, (str, Path)):
            source: Any = str(path_or_proto)
            try:
                proto = onnx.load(source, load_external_data=False)
            except OSError:
                raise
            except Exception as err:  # protobuf DecodeError, onnx's own errors
                raise GraphError([f"not a readable ONNX model ({type(err).__name__}: "
                                  f"{str(err)[:300]})"], source) from None
        else:
            proto, source = path_or_proto, path_or_proto.SerializeToString()
        where = path_or_proto if isinstance(path_or_proto, (str, Path)) else "(ModelProto)"
        self.config, self.graph = _recorded(proto, where)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warnings about CastLike nodes it cannot fold
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[optimization]
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(source, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's Fail, InvalidGraph, InvalidProtobuf, ...
            raise GraphError([f"ONNX Runtime cannot load it ({type(err).__name__}: "
                              f"{str(err)[:300]})"], where) from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, images: Any) -> dict[str, np.ndarray]:
        """Outputs by name (``logits`` (B, 1, C), ``features``, ``grid``) for float32 images
        of the graph's (C, H, W); any batch size."""
        c = self.config
        check_images(images, c["in_channels"], c["patch_size"], self.graph.image_size)
        try:
            values = self.session.run(None, {"images": np.ascontiguousarray(images)})
        except Exception as err:  # onnxruntime's own exception types
            raise RuntimeError(f"ONNX Runtime failed to run the graph ({type(err).__name__}: "
                               f"{str(err)[:300]})") from None
        return dict(zip(self.output_names, values, strict=True))


def _recorded(proto: Any, where: object) -> tuple[dict[str, Any], GraphConfig]:
    """The checkpoint config and the GraphConfig the exporter recorded in the metadata."""
    meta = {p.key: p.value for p in proto.metadata_props}
    if METADATA_GRAPH not in meta or METADATA_CONFIG not in meta:
        raise GraphError([f"not an AdaPerceiver export: its metadata lacks {METADATA_GRAPH!r} "
                          f"or {METADATA_CONFIG!r}"], where)
    try:
        config = json.loads(meta[METADATA_CONFIG])
        g = json.loads(meta[METADATA_GRAPH])
        graph = GraphConfig(**{**g, "granularities": tuple(g["granularities"]),
                               "token_grans": tuple(g["token_grans"]),
                               "image_size": tuple(g["image_size"])})
        if not isinstance(config, dict) or not {"in_channels", "patch_size"} <= set(config):
            raise ValueError("the config is not an object with in_channels and patch_size")
    except (ValueError, TypeError, KeyError) as err:
        raise GraphError([f"its AdaPerceiver metadata is malformed ({type(err).__name__}: "
                          f"{str(err)[:300]})"], where) from None
    return config, graph
