"""ONNX export: one graph per static configuration, dynamic batch (``adaperceiver export-onnx``).

A graph bakes in one configuration of the call: N latents (``num_tokens``) with their
granularities (MASK-2), one FFN width (``mat_dim``, MAT-1), a fixed depth (DEPTH-1)
and an image size (H, W) (PATCH-2); only the batch dimension is dynamic. It is
exported with the default exporter, ``torch.onnx.export(..., dynamo=True)``, opset
``OPSET``; its input is ``images`` (B, C, H, W) float32 and its outputs are ``logits``
(B, 1, C), plus ``features`` (B, M, output_feat_dim) for the distill model. The
checkpoint's config and the graph's configuration are recorded in the model's
``metadata_props`` (``METADATA_CONFIG``, ``METADATA_GRAPH``) and every graph passes
``onnx.checker.check_model(..., full_check=True)``.

Confidence early exit (EXIT-1..4) is data-dependent control flow and is *not*
exported: a graph runs its fixed depth. The anytime graph (``anytime=True``, output
``grid`` (B, depth, G, C), ANY-1) gives the logits after every depth in one run, and
``adaperceiver.anytime.early_exit`` applies the exit rule to ``grid[:, :, -1]`` on the
host (ANY-6; ``conformance.adapters.onnxruntime`` does so); docs/porting-onnx.md says why.

What the exporter needs from the model code (keep it working, see docs/porting-onnx.md):
the call is parsed once, outside the trace, on a one-image probe (``parse_call``
builds Python lists of batch length, which would specialise the batch), and the
forward is then traced from the model's own pieces (``_start``, ``_plan``,
``_run_blocks``, ``_write_query``, ``_write``, ``output_adapter``,
``_write_features``) with Python ints only; inside ``torch.export``
``torch.compiler.is_compiling()`` is True, so ``rope.apply_rope`` takes its real-valued
form (no complex tensors) and every initializer is a checkpoint parameter, named
by its state-dict key (prefixed ``model.``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..arguments import CallArgs, parse_call
from ..files import atomic_write
from ..masks import granularities
from ..model import ClassificationAdaPerceiver, DistillAdaPerceiver
from .quantize import QUANTIZE, quantize_int8

OPSET = 20  # >= 18: Resize with antialias (PATCH-2) needs opset 18
METADATA_CONFIG = "adaperceiver.config"  # the checkpoint's config.json (JSON)
METADATA_GRAPH = "adaperceiver.graph"  # the baked-in GraphConfig (JSON)
PARAM_PREFIX = "model."  # initializer name = PARAM_PREFIX + state-dict key

Model = ClassificationAdaPerceiver | DistillAdaPerceiver


@dataclass(frozen=True)
class GraphConfig:
    """The static configuration one graph bakes in.

    num_tokens N and its granularities (MASK-2 of the call's token_grans and N);
    mat_dim m and hidden h = int(m * ffn_ratio) (None: full width, MAT-4); depth (the
    config depth for an anytime graph, which outputs every depth); image_size (H, W);
    kind "classification" or "distill"; anytime: the graph also outputs ``grid``.
    """

    kind: str
    num_tokens: int
    granularities: tuple[int, ...]
    token_grans: tuple[int, ...]
    mat_dim: int | None
    hidden: int | None
    depth: int
    image_size: tuple[int, int]
    anytime: bool = False

    @property
    def output_names(self) -> tuple[str, ...]:
        names = ("logits", "features") if self.kind == "distill" else ("logits",)
        return names + (("grid",) if self.anytime else ())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def model_kind(model: Model) -> str:
    return "distill" if isinstance(model, DistillAdaPerceiver) else "classification"


def graph_config(model: Model, *, num_tokens: Any = None, mat_dim: Any = None, depth: Any = None,
                 image_size: Any = None, token_grans: Any = None,
                 anytime: bool = False) -> tuple[GraphConfig, CallArgs]:
    """Check a static configuration (ARG-1..3, ARG-5, ARG-7) and resolve its defaults.

    Raises ``ValueError``/``TypeError`` naming the argument: a per-sample ``mat_dim``
    list (a graph has one width), an ``image_size`` that is not two positive multiples
    of ``patch_size``, or ``depth`` with ``anytime`` (an anytime graph runs every depth).
    """
    c = model.config
    if mat_dim is not None and not isinstance(mat_dim, int) and not hasattr(mat_dim, "__index__"):
        raise TypeError(f"mat_dim must be one int in 1..{c['embed_dim']} (embed_dim) or None for "
                        f"a static ONNX graph (a graph bakes in one width; export one graph per "
                        f"width), got {mat_dim!r}")
    H, W = _image_size(image_size, c)
    if anytime and depth is not None:
        raise ValueError(f"depth must be None for an anytime graph (it outputs every depth "
                         f"1..{c['depth']}), got {depth!r}")
    probe = torch.zeros(1, c["in_channels"], H, W)  # one image: the batch stays symbolic
    call = parse_call(c, probe, num_tokens=num_tokens, mat_dim=mat_dim, depth=depth,
                      token_grans=token_grans)
    hidden = None if call.hidden is None else call.hidden[0]
    gc = GraphConfig(kind=model_kind(model), num_tokens=call.num_tokens,
                     granularities=granularities(call.token_grans, call.num_tokens),
                     token_grans=call.token_grans,
                     mat_dim=None if mat_dim is None else int(mat_dim),
                     hidden=hidden, depth=call.depth, image_size=(H, W), anytime=anytime)
    return gc, call


def _image_size(image_size: Any, config: dict) -> tuple[int, int]:
    """(H, W): the trained square size when None, else two positive multiples of patch_size."""
    P = config["patch_size"]
    if image_size is None:
        return config["img_size"], config["img_size"]
    size = list(image_size) if isinstance(image_size, (list, tuple)) else None
    if (size is None or len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool)
                                                  and s >= 1 and s % P == 0 for s in size)):
        raise ValueError(f"image_size must be (H, W), two positive multiples of patch_size {P}, "
                         f"got {image_size!r}")
    return size[0], size[1]


class StaticForward(nn.Module):
    """The traced module: ``forward(images)`` at one parsed configuration, Python ints only.

    Classification: logits (B, 1, C). Distill: logits and features (B, M, F_out).
    With ``anytime``: also the grid (B, depth, G, C) of ``model.anytime`` (ANY-1).
    """

    def __init__(self, model: Model, call: CallArgs, gc: GraphConfig):
        super().__init__()
        self.model = model
        self.call = call
        self.gc = gc

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return self._anytime(images) if self.gc.anytime else self._fixed(images)

    def _fixed(self, images: Tensor) -> tuple[Tensor, ...]:
        """forward(images) at the parsed call: logits (B, 1, C) [, features]."""
        m, call = self.model, self.call
        patches, latents, rope, _ = m._start(images, call, False)
        latents = m._run_blocks(latents, rope, m._plan(call), call, None)
        logits = m.output_adapter(m._write(latents, m._write_query(rope)))  # (B, 1, C)
        if self.gc.kind == "distill":
            return logits, m._write_features(patches, latents, rope)
        return (logits,)

    def _anytime(self, images: Tensor) -> tuple[Tensor, ...]:
        """The grid (B, K, G, C) as ``adaperceiver.anytime.anytime`` computes it (ANY-1..4):
        one pass under the prefix property, else one pass per granularity (ANY-4);
        logits = grid[:, K-1, G-1] (the full depth with N latents)."""
        from ..anytime import _pass, one_pass_exact

        m, call, grans = self.model, self.call, self.gc.granularities
        if one_pass_exact(m.config, call.num_tokens):
            grid = _pass(m, images, call, grans)  # (B, K, G, C)
        else:
            grid = torch.cat([_pass(m, images, replace(call, num_tokens=g), (g,))
                              for g in grans], dim=2)  # G x (B, K, 1, C) -> (B, K, G, C)
        if self.gc.kind == "distill":  # the features need the fixed forward's latents
            return *self._fixed(images), grid
        return grid[:, -1, -1:], grid  # logits (B, 1, C)


@contextlib.contextmanager
def _shared_torchlib_registry() -> Iterator[None]:
    """Build the exporter's torchlib registry once per process instead of once per export.

    ``torch.onnx.export(dynamo=True)`` rebuilds ``ONNXRegistry.from_torchlib`` on every
    call (seconds, more than tracing a tiny model). The registry is only read during an
    export without a custom translation table, so one per opset is reused. Falls back
    to the plain exporter when the private hook is absent in another torch version.
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:  # pragma: no cover - other torch versions
        yield
        return
    cls = getattr(_registration, "ONNXRegistry", None)
    original = getattr(cls, "from_torchlib", None)
    if original is None:  # pragma: no cover - other torch versions
        yield
        return
    build = original.__func__

    def cached(klass, opset_version=None):
        key = opset_version
        if key not in _REGISTRIES:
            args = () if opset_version is None else (opset_version,)
            _REGISTRIES[key] = build(klass, *args)
        return _REGISTRIES[key]

    cls.from_torchlib = classmethod(cached)
    try:
        yield
    finally:
        cls.from_torchlib = original


_REGISTRIES: dict[Any, Any] = {}

EXPORTER_LOGGERS = ("torch.onnx", "onnxscript")  # "torchvision is not installed", "Skipping
# constant folding for op LayerNormalization with multiple outputs", one line per op


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (warnings and the log records of ``EXPORTER_LOGGERS``
    below ERROR) for the duration of one export; errors still raise and log."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def load_model(model_or_checkpoint: Model | str | Path) -> Model:
    """A model instance, or a checkpoint directory / hub id loaded as the class its
    config.json names (``output_feat_dim``: distill), in float32 eval mode."""
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint.float().eval()
    from ..hub import read_config, resolve_files

    config_path, _ = resolve_files(model_or_checkpoint)
    cls = (DistillAdaPerceiver if "output_feat_dim" in read_config(config_path)
           else ClassificationAdaPerceiver)
    return cls.from_pretrained(model_or_checkpoint).float().eval()


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote: the path (or None), the ModelProto, the configuration,
    the export wall time in seconds and the serialized size in bytes."""

    path: Path | None
    proto: Any
    config: GraphConfig
    seconds: float
    size_bytes: int


def export_onnx(model_or_checkpoint: Model | str | Path, out: str | Path | None, *,
                num_tokens: int | None = None, mat_dim: int | None = None,
                depth: int | None = None, image_size: Sequence[int] | None = None,
                token_grans: Sequence[int] | None = None, anytime: bool = False,
                optimize: bool = True, quantize: str | None = None) -> ExportResult:
    """Export one static configuration of a model or checkpoint to ONNX (see the module doc).

    ``out=None`` returns the checked ModelProto without writing it. ``optimize`` runs the
    exporter's ONNX optimizer (constant folding); without it every initializer is a
    checkpoint parameter named ``PARAM_PREFIX + key``, so other checkpoints of the same
    config can be swapped in (``swap_weights``). ``quantize="int8"`` quantizes the weight
    MatMuls (``adaperceiver.onnx.quantize``); None keeps float32.
    """
    import onnx

    if quantize not in (None, *QUANTIZE):
        raise ValueError(f"quantize must be one of {list(QUANTIZE)} or None, got {quantize!r}")
    model = load_model(model_or_checkpoint)
    gc, call = graph_config(model, num_tokens=num_tokens, mat_dim=mat_dim, depth=depth,
                            image_size=image_size, token_grans=token_grans, anytime=anytime)
    H, W = gc.image_size
    probe = torch.zeros(2, model.config["in_channels"], H, W)
    start = time.perf_counter()
    with torch.no_grad(), _shared_torchlib_registry(), _quiet_exporter():
        program = torch.onnx.export(
            StaticForward(model, call, gc), (probe,), dynamo=True, opset_version=OPSET,
            input_names=["images"], output_names=list(gc.output_names),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), optimize=optimize,
            verbose=False)
    proto = program.model_proto
    for key, value in ((METADATA_CONFIG, json.dumps(model.config, sort_keys=True)),
                       (METADATA_GRAPH, gc.to_json())):
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    if quantize == "int8":
        proto = quantize_int8(proto)
    seconds = time.perf_counter() - start
    data = proto.SerializeToString()
    path = None
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:  # complete or absent, never a partial graph
            f.write(data)
    return ExportResult(path, proto, gc, seconds, len(data))


def swap_weights(proto: Any, state_dict: dict[str, Any]) -> Any:
    """A copy of an unoptimised graph (``optimize=False``) with every parameter initializer
    (named ``PARAM_PREFIX + key``) replaced by ``state_dict[key]`` (float32 arrays or tensors).

    The graph's structure depends on the config and the call, never on weight values,
    and the other initializers are constants the trace made from Python values, so
    this equals exporting the other checkpoint. Raises ``KeyError`` naming an
    initializer that is not a parameter, ``ValueError`` on a shape mismatch.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for init in copy.graph.initializer:
        if not init.name.startswith(PARAM_PREFIX):
            continue  # a constant the trace made from Python values (e.g. the granularities)
        key = init.name.removeprefix(PARAM_PREFIX)
        if key.rsplit(".", 1)[-1].startswith("lifted_tensor_"):
            continue  # a tensor the forward built from Python values (e.g. prefix lengths)
        if key not in state_dict:
            raise KeyError(f"initializer {init.name!r} is not a checkpoint parameter; export "
                           "with optimize=False to swap weights")
        value = state_dict[key]
        array = np.asarray(value.detach().float().numpy() if isinstance(value, Tensor) else value,
                           dtype=np.float32)
        if tuple(array.shape) != tuple(init.dims):
            raise ValueError(f"weights {key!r} have shape {array.shape}, the graph expects "
                             f"{tuple(init.dims)}")
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return copy


# --- command line (adaperceiver.cli.export) ------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adaperceiver.onnx.export export-onnx ...``: the same as ``adaperceiver
    export-onnx ...`` (one-line errors, exit status)."""
    from ..cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["export-onnx"]:
        print("usage: python -m adaperceiver.onnx.export export-onnx [options] (see "
              "adaperceiver export-onnx --help)", file=sys.stderr)
        return 2
    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
