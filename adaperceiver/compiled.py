"""Opt-in compiled inference: ``torch.compile`` (inductor) with frozen weights.

``compile_frozen(model)`` returns the model compiled with inductor's freezing: under
``torch.no_grad()`` the parameters are treated as constants and what depends on them
alone is folded; elementwise work (RoPE, LayerNorm, GELU, residuals) is fused into
generated kernels, while the GEMMs stay ATen (MKL) calls on the CPU where it was
measured (the profile shows ``aten::addmm``, no prepacked weights). It is a snapshot
of the weights: after changing any parameter, compile again. Each new batch size,
image size or budget (num_tokens, mat_dim, depth) compiles a new graph (70-80 s at the
published size on a 2-core CPU, about 30 s when torch's on-disk inductor cache holds
it); per-sample widths and confidence exit run the graph per call they were traced for.
``python -m adaperceiver.bench --compile`` measures what it pays on the machine at
hand: on the 2-core development machine 1.05-1.14x eager and 1.07-1.21x the peer at
(256, 832, 21), batch 1 and 8 (docs/performance.md).
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
