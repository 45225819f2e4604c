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


def test_rope_tables_are_constants_of_a_compiled_graph():
    """ROPE-1..3: under torch.compile the RoPE tables (functions of Python numbers only) are
    computed once while tracing, so the captured graph holds them as constants and
    computes no cos/sin per call (inductor otherwise fused the float64 trig into the
    rotation kernels and recomputed it for every rotated element)."""
    config = tiny_config()
    with checkpoint(config, seed=7) as (path, _):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    x = torch.from_numpy(images(1, config)).float()
    try:
        with torch.no_grad():
            out = torch.compile(model, fullgraph=True, backend=capture)(x, num_tokens=40).logits
            expected = model(x, num_tokens=40).logits  # N above max_latent_tokens: NTK tables
    finally:
        torch._dynamo.reset()
    assert rel_err(out, expected.double().numpy()) <= 1e-6
    names = {getattr(node.target, "__name__", str(node.target))  # torch.cos or "cos" (method)
             for gm in graphs for node in gm.graph.nodes if node.op.startswith("call")}
    trig = names & {"cos", "sin", "outer"}
    assert len(graphs) == 1 and not trig, f"RoPE tables computed in the graph: {trig}"
