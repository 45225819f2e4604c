"""Opt-in compiled inference: ``torch.compile`` (inductor) with frozen weights.

``compile_frozen(model)`` returns the model compiled with inductor's freezing: under
``torch.no_grad()`` the parameters are treated as constants and what depends on them
alone is folded; elementwise work (RoPE, LayerNorm, GELU, residuals) is fused into
generated kernels, while the GEMMs stay ATen (MKL) calls on the CPU where it was
measured (the profile shows ``aten::addmm``, no prepacked weights). It is a snapshot
of the weights: after changing any parameter, compile again. Each new batch size,
image size or budget (num_tokens, mat_dim, depth) compiles a new graph (minutes on a
small CPU); per-sample widths and confidence exit run the graph per call they were
traced for. On the 2-core development machine it ran slower than eager (inductor
recomputes the RoPE tables' cos/sin per rotated element); ``python -m adaperceiver.bench
--compile`` measures what it pays on the machine at hand (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .model import AdaPerceiverOutput, _AdaPerceiver


def compile_frozen(model: _AdaPerceiver) -> Callable[..., AdaPerceiverOutput]:
    """``model`` compiled by inductor with frozen weights; call it under ``torch.no_grad()``
    with the model's forward arguments."""
    return torch.compile(model.eval(), fullgraph=True, dynamic=False,
                         options={"freezing": True})
