"""One callable per budget, engine and precision: ``runner(model, engine=..., precision=...)``.

>>> from adaperceiver.engine import runner                                  # doctest: +SKIP
>>> run = runner("path/to/checkpoint", engine="auto", num_tokens=128, depth=12)
>>> out = run(images)            # AdaPerceiverOutput: logits (B, 1, C) float32, exit_depths (B,)
>>> run.engine, run.precision    # what actually runs, e.g. ("onnxruntime", "fp32")

Engines and precisions (``SUPPORTED``):

* ``torch`` fp32: the model itself, eager, under ``torch.inference_mode`` (follows later
  changes of the weights); on the CPU its linears run oneDNN's GEMM on the plain weights
  (``layers.linear``; docs/performance.md).
* ``torch`` bf16: the model under ``torch.autocast(device, torch.bfloat16)``: matmuls and
  attention in bfloat16 (accumulating in float32), norms, softmax and the residual stream in
  float32 (TOL-1's bfloat16 profile), logits returned as float32; CPU or CUDA, as the
  model's device. A bfloat16 copy of the model was faster on the 2-core CPU but failed
  TOL-1 (features 0.14 relative on a tiny distill config of the conformance suite: its
  residual stream and norms round to bfloat16), docs/performance.md.
* ``compiled`` fp32 / bf16: ``adaperceiver.compiled.compile_frozen`` (inductor, frozen
  prepacked weights; bf16: compiled under ``torch.autocast``, as torch bf16 computes, with
  the weights cast to bfloat16 and packed for oneDNN once); the first call of each batch
  size and image size compiles (about a minute at the published size), which
  ``setup_seconds`` does not include.
* ``onnxruntime`` fp32 / int8: the budget exported once to a static graph
  (``adaperceiver.onnx.export_onnx``; int8: ``quantize="int8"``, dynamic quantization of
  the weight matmuls) run by ONNX Runtime's CPU provider with torch's thread count. A
  confidence exit (``depth_tau``) runs the anytime graph and applies the exit rule to its
  logits on the host (ANY-6), so it saves no compute there. Another image size exports
  another graph on first use.
* ``auto``: for fp32, the fastest of ``torch`` and ``onnxruntime`` for this model
  configuration, budget and thread count, measured once per process (a batch of
  ``AUTO_PROBE_BATCH`` random images at the trained size, one warm-up and
  ``AUTO_ROUNDS`` interleaved rounds, smallest median wins) and kept in memory only
  (``auto_choices``); ``compiled`` is not a candidate because its setup costs a minute
  per budget. For bf16 auto is ``torch`` (``compiled`` bf16 is faster per call but
  compiles for a minute per budget), for int8 ``onnxruntime``.

The whole anytime grid (every depth x granularity of one width, ANY-1; what ``sweep`` and
``demo`` evaluate) comes from ``anytime_model(model, engine=..., precision=...)``: an object
whose ``anytime(x, num_tokens=..., mat_dim=...)`` returns what ``model.anytime`` returns
(``GRID_SUPPORTED``): the torch model itself (fp32; bf16 is the caller's
``torch.autocast``), or ``adaperceiver.onnx.anytime.OnnxAnytime``, one exported anytime
graph per width run by ONNX Runtime (fp32, or int8 with its weight matmuls quantized).

Every non-fp32-eager runner is a snapshot of the weights when it was made (a copy, a
graph or a compiled graph): make a new runner after changing them.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .arguments import parse_call
from .bench.timing import interleaved
from .config import ENGINES, GRID_SUPPORTED, PRECISIONS, SUPPORTED
from .model import AdaPerceiverOutput, ClassificationAdaPerceiver

BUDGET_KEYS = ("num_tokens", "mat_dim", "depth", "depth_tau", "token_grans", "exit_policy")
AUTO_PROBE_BATCH = 8
AUTO_ROUNDS = 3
auto_choices: dict[tuple[str, str, int], str] = {}  # (config, budget, threads) -> engine


@dataclass
class Runner:
    """``runner(images) -> AdaPerceiverOutput`` (logits (B, 1, C) float32 on the model's
    device, exit_depths (B,) int64) at one budget; ``engine`` and ``precision`` say what
    runs, ``setup_seconds`` what making it cost (copy, export, quantization)."""

    engine: str
    precision: str
    budget: dict[str, Any]
    setup_seconds: float
    call: Callable[[Any], AdaPerceiverOutput] = field(repr=False)

    def __call__(self, images: Tensor | np.ndarray) -> AdaPerceiverOutput:
        return self.call(images)


def runner(model_or_checkpoint: ClassificationAdaPerceiver | str | Path, *, engine: str = "torch",
           precision: str = "fp32", **budget: Any) -> Runner:
    """A ``Runner`` for ``budget`` (the forward's keywords ``BUDGET_KEYS``) on ``engine``
    (``ENGINES``) at ``precision`` (``PRECISIONS``); see the module doc. Bad arguments raise
    ``ValueError``/``TypeError`` naming the argument, before any export or copy."""
    from .onnx.export import load_model

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    unknown = sorted(set(budget) - set(BUDGET_KEYS))
    if unknown:
        raise TypeError(f"unknown budget argument(s) {unknown}; allowed: {list(BUDGET_KEYS)}")
    model = load_model(model_or_checkpoint)
    if not isinstance(model, ClassificationAdaPerceiver):
        raise TypeError(f"model_or_checkpoint must be a classification model, got "
                        f"{type(model).__name__} (a distill model: call it directly)")
    c = model.config
    budget = {k: v for k, v in budget.items() if v is not None}
    probe = torch.zeros(1, c["in_channels"], c["img_size"], c["img_size"])
    parse_call(c, probe, **budget)  # ARG-1..8 now, not at the first call
    if engine == "auto":
        engine = _auto_engine(model, precision, budget)
    if precision not in SUPPORTED[engine]:
        where = [e for e, p in SUPPORTED.items() if precision in p]
        raise ValueError(f"precision {precision!r} is not available with engine {engine!r} "
                         f"(it has {', '.join(SUPPORTED[engine])}); use engine "
                         f"{' or '.join(map(repr, where))}")
    start = time.perf_counter()
    call = _BUILDERS[engine](model, precision, budget)
    return Runner(engine, precision, budget, time.perf_counter() - start, call)


def anytime_model(model: ClassificationAdaPerceiver, *, engine: str = "torch",
                  precision: str = "fp32") -> Any:
    """What computes ``model.anytime``'s grid on ``engine`` at ``precision``
    (``GRID_SUPPORTED``; ``auto`` is torch, onnxruntime for int8): the model itself for
    torch (bf16: run it under ``torch.autocast``), an ``OnnxAnytime`` (graphs exported on
    first use, a snapshot of the weights) for onnxruntime. Anything else is a
    ``ValueError`` naming what is allowed."""
    if engine == "auto":
        engine = "onnxruntime" if precision == "int8" else "torch"
    if precision not in GRID_SUPPORTED.get(engine, ()):
        allowed = "; ".join(f"{e}: {', '.join(p)}" for e, p in GRID_SUPPORTED.items())
        raise ValueError(f"engine {engine!r} with precision {precision!r} cannot compute the "
                         f"anytime grid (allowed: {allowed})")
    if engine == "torch":
        return model
    from .onnx.anytime import OnnxAnytime

    return OnnxAnytime(model.float().eval(), quantize="int8" if precision == "int8" else None)


# --- engines -------------------------------------------------------------------------------

def _torch(model: ClassificationAdaPerceiver, precision: str,
           budget: dict[str, Any]) -> Callable[[Any], AdaPerceiverOutput]:
    """Eager, the model itself; bf16 under ``torch.autocast`` on the model's device type."""
    device = next(model.parameters()).device.type
    autocast = (partial(torch.autocast, device, torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext)

    def call(images: Any) -> AdaPerceiverOutput:
        with torch.inference_mode(), autocast():
            out = model(torch.as_tensor(images), **budget)
        return AdaPerceiverOutput(out.logits.float(), out.exit_depths)

    return call


def _compiled(model: ClassificationAdaPerceiver, precision: str,
              budget: dict[str, Any]) -> Callable[[Any], AdaPerceiverOutput]:
    """``compile_frozen``; bf16 compiled as it runs under ``torch.autocast``."""
    from .compiled import compile_frozen

    fast = compile_frozen(model, autocast=torch.bfloat16 if precision == "bf16" else None)
    return lambda images: fast(torch.as_tensor(images), **budget)


def _onnxruntime(model: ClassificationAdaPerceiver, precision: str,
                 budget: dict[str, Any]) -> Callable[[Any], AdaPerceiverOutput]:
    """One graph per image size (the trained size exported now), run by ONNX Runtime."""
    from .anytime import early_exit
    from .onnx.export import export_onnx
    from .onnx.session import OnnxGraph, check_images

    c = model.config
    tau, policy = budget.get("depth_tau"), budget.get("exit_policy", "batch_mean")
    static = {k: budget.get(k) for k in ("num_tokens", "mat_dim", "token_grans")}
    static.update({"anytime": True} if tau is not None else {"depth": budget.get("depth")})
    quantize = "int8" if precision == "int8" else None
    graphs: dict[tuple[int, int], OnnxGraph] = {}

    def graph(size: tuple[int, int]) -> OnnxGraph:
        if size not in graphs:
            result = export_onnx(model, None, image_size=size, quantize=quantize, **static)
            graphs[size] = OnnxGraph(result.proto, threads=torch.get_num_threads())
        return graphs[size]

    graph((c["img_size"], c["img_size"]))

    def call(images: Any) -> AdaPerceiverOutput:
        x = images.detach().cpu().numpy() if isinstance(images, Tensor) else images
        x = check_images(x, c["in_channels"], c["patch_size"])
        out = graph(tuple(x.shape[2:])).run(x)
        if tau is None:
            depth = parse_call(c, torch.zeros(1, *x.shape[1:]), **budget).depth
            return AdaPerceiverOutput(torch.from_numpy(out["logits"]),
                                      torch.full((x.shape[0],), depth, dtype=torch.int64))
        by_depth = torch.from_numpy(out["grid"][:, :, -1])  # (B, K, G, C) -> (B, K, C) at N
        depths, logits = early_exit(by_depth, tau, policy)
        return AdaPerceiverOutput(logits[:, None], depths)  # (B, C) -> (B, 1, C)

    return call


_BUILDERS = {"torch": _torch, "compiled": _compiled, "onnxruntime": _onnxruntime}


def _auto_engine(model: ClassificationAdaPerceiver, precision: str, budget: dict[str, Any]) -> str:
    """The engine ``auto`` means (module doc): measured once per process for fp32."""
    if precision != "fp32":
        return "torch" if precision == "bf16" else "onnxruntime"
    key = (json.dumps(model.config, sort_keys=True), json.dumps(budget, sort_keys=True),
           torch.get_num_threads())
    if key not in auto_choices:
        c = model.config
        x = torch.randn(AUTO_PROBE_BATCH, c["in_channels"], c["img_size"], c["img_size"])
        calls = {name: partial(_BUILDERS[name](model, precision, budget), x)
                 for name in ("torch", "onnxruntime")}
        times = interleaved(calls, AUTO_ROUNDS)  # one warm-up call each, then the rounds
        auto_choices[key] = min(times, key=lambda name: statistics.median(times[name]))
    return auto_choices[key]
