"""Opt-in compiled inference: ``torch.compile`` (inductor) with frozen weights.

``compile_frozen(model)`` returns the model compiled with inductor's freezing: the
parameters are treated as constants, the linear weights are prepacked for MKL
(``mkl::_mkl_linear`` replaces ``aten::addmm``, and the bias is no longer copied into
every output first), and the elementwise work (RoPE, LayerNorm, GELU, residuals) is
fused into generated kernels. It is a snapshot of the weights: after changing any
parameter, compile again. Each new batch size, image size or budget (num_tokens,
mat_dim, depth) compiles a new graph (about a minute at the published size on a
2-core CPU) and holds its own packed copy of the weights (about 0.6 GB at the published
size); per-sample widths and confidence exit run the graph per call they were
traced for. ``python -m adaperceiver.bench --compile`` measures what it pays on the
machine at hand (docs/performance.md).

``compile_frozen(model, autocast=torch.bfloat16)`` compiles the model as it runs under
``torch.autocast(device, bfloat16)`` (TOL-1's bfloat16 profile: matmuls and attention in
bfloat16 accumulating in float32, norms, softmax and the residual stream in float32):
freezing then casts each linear weight to bfloat16 once and prepacks it for oneDNN
(``mkldnn::_linear_pointwise``) instead of casting it on every call as eager autocast does;
its packed copy takes half the float32 one. Logits (and features) come back as float32.

Freezing is decided when dynamo traces, from inductor's process-wide ``freezing``
setting (``torch.compile(options={"freezing": True})`` alone leaves the weights as
graph inputs, so nothing is prepacked). The compiled model therefore turns the setting
on for the duration of each call, under a process-wide lock so that concurrent calls
cannot leave it on: calls from several threads run one at a time (each already uses
every intra-op thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from functools import partial, wraps

import torch
import torch._inductor.config as inductor_config

from .model import AdaPerceiverOutput, _AdaPerceiver

_FREEZING = threading.Lock()  # held while inductor's process-wide freezing setting is on


def compile_frozen(model: _AdaPerceiver,
                   autocast: torch.dtype | None = None) -> Callable[..., AdaPerceiverOutput]:
    """``model`` compiled by inductor with frozen, prepacked weights, under
    ``torch.autocast(device, autocast)`` when ``autocast`` is given (``torch.bfloat16``).
    Call it with the model's forward arguments; it runs without autograd (frozen weights
    are constants)."""
    if autocast not in (None, torch.bfloat16):
        raise ValueError(f"autocast must be None (float32) or torch.bfloat16, got {autocast!r}")
    compiled = torch.compile(model.eval(), fullgraph=True, dynamic=False)
    device = next(model.parameters()).device.type
    cast = (partial(torch.autocast, device, autocast) if autocast is not None
            else contextlib.nullcontext)

    @wraps(model.forward)
    def frozen(*args, **kwargs) -> AdaPerceiverOutput:
        with _FREEZING, inductor_config.patch(freezing=True), torch.no_grad(), cast():
            out = compiled(*args, **kwargs)
        if autocast is None:
            return out
        features = None if out.features is None else out.features.float()
        return dataclasses.replace(out, logits=out.logits.float(), features=features)

    return frozen
