"""Opt-in compiled inference: ``torch.compile`` (inductor) with frozen weights.

``compile_frozen(model)`` returns the model compiled with inductor's freezing: under
``torch.no_grad()`` the parameters are treated as constants, folded into the graph and,
on CPU, linear weights are prepacked for oneDNN; elementwise work (RoPE, LayerNorm,
GELU, residuals) is fused. It is a snapshot of the weights: after changing any
parameter, compile again. Each new batch size, image size or budget (num_tokens,
mat_dim, depth) compiles a new graph (minutes on a small CPU); per-sample widths and
confidence exit run the graph per call they were traced for. When it pays is measured
by ``python -m adaperceiver.bench --compile`` (docs/performance.md).
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
