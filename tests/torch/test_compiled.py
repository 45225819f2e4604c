"""The opt-in compiled path ``adaperceiver.compiled.compile_frozen`` (inductor, frozen weights)."""

from __future__ import annotations

import pytest
import torch
from torch_helpers import checkpoint, images, rel_err, tiny_config

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.compiled import compile_frozen


@pytest.mark.slow
# importing inductor triggers torch's own torch.jit deprecation warning (not our code)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_frozen_matches_the_oracle():
    """TOL-1 (float32 row), MASK-3, MAT-1: the frozen inductor graph gives the oracle's logits
    at a masked, narrowed, shallower budget."""
    config = tiny_config()
    with checkpoint(config, seed=6) as (path, weights):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    x = images(2, config)
    args = dict(num_tokens=12, mat_dim=5, depth=2)
    compiled = compile_frozen(model)
    try:
        with torch.no_grad():
            out = compiled(torch.from_numpy(x).float(), **args).logits
        assert rel_err(out, rn.classify(weights, config, x, **args)) <= 1e-4
    finally:
        torch._dynamo.reset()



def test_fullgraph_compile_follows_num_tokens():
    """ROPE-1..3, MASK-2: one ``torch.compile(fullgraph=True)`` model called with several N
    (including N above max_latent_tokens) gives eager's logits for each: torch's automatic
    dynamic ints make N symbolic after the second value, and nothing in the forward may
    bake one N's tables in (a constant-result RoPE table did, and failed here)."""
    config = tiny_config()
    with checkpoint(config, seed=7) as (path, _):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    x = torch.from_numpy(images(2, config)).float()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    try:
        with torch.no_grad():
            for n in (12, 16, 20, 40):
                out = compiled(x, num_tokens=n).logits
                assert rel_err(out, model(x, num_tokens=n).logits.double().numpy()) <= 1e-6, n
    finally:
        torch._dynamo.reset()
