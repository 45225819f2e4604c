"""The opt-in compiled path ``adaperceiver.compiled.compile_frozen`` (inductor, frozen weights)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch_helpers import checkpoint, images, rel_err, tiny_config

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.compiled import compile_frozen


@pytest.mark.slow
def test_compile_frozen_matches_the_oracle():
    """TOL-1 (float32 row), MASK-3, MAT-1: the frozen inductor graph gives the oracle's logits
    at a masked, narrowed, shallower budget; its weights really are frozen and prepacked
    (MKL packed linears, no ``aten::addmm``), also when called from several threads, and
    inductor's process-wide freezing setting is off again afterwards."""
    config = tiny_config()
    with checkpoint(config, seed=6) as (path, weights):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    x = torch.from_numpy(images(2, config)).float()
    args = dict(num_tokens=12, mat_dim=5, depth=2)
    expected = rn.classify(weights, config, x.numpy(), **args)
    compiled = compile_frozen(model)
    try:
        assert rel_err(compiled(x, **args).logits, expected) <= 1e-4
        with torch.profiler.profile() as prof:
            compiled(x, **args)
        ops = {event.key for event in prof.key_averages()}
        if torch._C.has_mkl:
            assert "mkl::_mkl_linear" in ops and "aten::addmm" not in ops, sorted(ops)
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda _: compiled(x, **args).logits, range(8)))
        assert all(rel_err(out, expected) <= 1e-4 for out in outs)
        assert not torch._inductor.config.freezing
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


def test_compiled_graph_keeps_rope_tables_constant():
    """ROPE-1..2: for N <= max_latent_tokens the traced graph holds the RoPE tables as a
    constant and computes no cos/sin (inductor otherwise recomputes them per rotated
    element, docs/performance.md); above max_latent_tokens (ROPE-3) they depend on N and
    are computed in the graph."""
    config = tiny_config()
    with checkpoint(config, seed=8) as (path, _):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    x = torch.from_numpy(images(2, config)).float()
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    trig = {torch.cos, torch.sin, "cos", "sin"}  # as functions or as tensor methods
    try:
        with torch.no_grad():
            for n, expect_trig in ((12, False), (40, True)):
                graphs.clear()
                torch._dynamo.reset()
                compiled = torch.compile(model, fullgraph=True, dynamic=False, backend=record)
                out = compiled(x, num_tokens=n).logits
                assert rel_err(out, model(x, num_tokens=n).logits.double().numpy()) <= 1e-6
                targets = {node.target for gm in graphs for node in gm.graph.nodes}
                assert bool(targets & trig) == expect_trig, (n, sorted(map(str, targets)))
    finally:
        torch._dynamo.reset()


def test_compile_frozen_names_a_bad_autocast_dtype():
    """compile_frozen compiles float32 or bfloat16 autocast only; anything else is refused
    before any compilation, naming the argument and what is allowed."""
    model = ClassificationAdaPerceiver(**tiny_config())
    with pytest.raises(ValueError, match=r"autocast must be None \(float32\) or torch.bfloat16, "
                                         r"got torch.float16"):
        compile_frozen(model, autocast=torch.float16)
