"""``adaperceiver.engine.runner``: every engine and precision against float32 eager.

Tolerances: float32 engines TOL-1 float32 (1e-4); bf16 TOL-1 bfloat16 (3e-2); int8
TOL-1 int8 (8e-2, ``conformance.profiles``).
On the bundled digits test set (359 images) every reduced precision must agree with the
float32 top-1 class on at least 99 % of the images (the issue's target).
"""

from __future__ import annotations

import pytest
import torch
from torch_helpers import checkpoint, images, rel_err

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver, engine
from adaperceiver.digits import DIGITS_MODEL, load_digits
from conformance.tolerances import RTOL

pytest.importorskip("onnxruntime")
CONFIG = rn.tiny_config()
BUDGET = {"num_tokens": 8, "mat_dim": 8, "depth": 2}


@pytest.fixture(scope="module")
def tiny():
    with checkpoint(CONFIG, seed=3) as (path, _):
        yield ClassificationAdaPerceiver.from_pretrained(path).eval()


@pytest.fixture(scope="module")
def x():
    return torch.from_numpy(images(5, CONFIG, seed=1)).float()


def reference(model, x, **budget):
    with torch.inference_mode():
        return model(x, **budget)


SLOW = pytest.mark.slow  # ONNX exports: 3-8 s each when idle, up to a minute on the loaded machine


@pytest.mark.parametrize(("name", "precision", "rtol"), [
    ("torch", "fp32", 0.0),
    pytest.param("onnxruntime", "fp32", RTOL["float32"], marks=SLOW),
    ("torch", "bf16", RTOL["bfloat16"]),
    pytest.param("onnxruntime", "int8", RTOL["int8"], marks=SLOW),
])
def test_engine_matches_float32_eager(tiny, x, name, precision, rtol):
    """Each engine and precision at one budget: float32 logits (B, 1, C) within its
    tolerance of eager float32, the fixed depth as exit depths, what runs recorded."""
    run = engine.runner(tiny, engine=name, precision=precision, **BUDGET)
    out, ref = run(x), reference(tiny, x, **BUDGET)
    assert (run.engine, run.precision) == (name, precision)
    assert out.logits.dtype == torch.float32 and out.logits.shape == ref.logits.shape
    assert rel_err(out.logits, ref.logits.double().numpy()) <= rtol
    assert out.exit_depths.tolist() == [2] * 5
    assert run.setup_seconds >= 0


@pytest.mark.parametrize("name", ["torch", pytest.param("onnxruntime", marks=SLOW)])
def test_confidence_exit_runs_on_every_engine(tiny, x, name):
    """depth_tau 0 exits every sample after block 1, depth_tau 1 (never reached by a
    softmax over 10 classes) runs all 3 blocks; logits match eager at the exit depth."""
    for tau, depth in ((0.0, 1), (1.0, 3)):
        run = engine.runner(tiny, engine=name, depth_tau=tau, exit_policy="per_sample")
        out = run(x)
        assert out.exit_depths.tolist() == [depth] * 5
        assert rel_err(out.logits, reference(tiny, x, depth=depth).logits.double().numpy()) <= (
            RTOL["float32"])


@SLOW
def test_onnxruntime_runner_exports_another_image_size_on_demand(tiny):
    run = engine.runner(tiny, engine="onnxruntime", **BUDGET)
    x = torch.from_numpy(images(2, CONFIG, H=24, W=8, seed=2)).float()
    assert rel_err(run(x).logits, reference(tiny, x, **BUDGET).logits.double().numpy()) <= (
        RTOL["float32"])


@SLOW
def test_auto_measures_once_and_keeps_the_choice(tiny, monkeypatch):
    """auto picks torch or onnxruntime for fp32 by timing, then reuses the choice without
    timing again; bf16 means torch and int8 onnxruntime without timing."""
    engine.auto_choices.clear()
    run = engine.runner(tiny, engine="auto", **BUDGET)
    assert run.engine in ("torch", "onnxruntime") and len(engine.auto_choices) == 1
    monkeypatch.setattr(engine, "interleaved", lambda *a: pytest.fail("timed again"))
    assert engine.runner(tiny, engine="auto", **BUDGET).engine == run.engine
    assert engine.runner(tiny, engine="auto", precision="bf16").engine == "torch"
    assert engine.runner(tiny, engine="auto", precision="int8").engine == "onnxruntime"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"engine": "tpu"}, r"engine must be one of auto, torch, compiled, onnxruntime, got 'tpu'"),
    ({"precision": "fp16"}, r"precision must be one of fp32, bf16, int8, got 'fp16'"),
    ({"engine": "torch", "precision": "int8"}, r"precision 'int8' is not available with "
                                               r"engine 'torch' .* use engine 'onnxruntime'"),
    ({"engine": "onnxruntime", "precision": "bf16"}, r"use engine 'torch'"),
    ({"num_tokens": 0}, r"num_tokens"),
    ({"width": 8}, r"unknown budget argument\(s\) \['width'\]"),
])
def test_bad_arguments_name_themselves(tiny, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        engine.runner(tiny, **kwargs)


@pytest.mark.slow  # one compile of the tiny model: 20-60 s on the loaded 2-core machine
@pytest.mark.parametrize(("precision", "rtol"), [("fp32", RTOL["float32"]),
                                                 ("bf16", RTOL["bfloat16"])])
def test_compiled_engine_matches_float32_eager(tiny, x, precision, rtol):
    """compiled fp32 within TOL-1 float32 of eager; compiled bf16 within TOL-1 bfloat16,
    float32 logits, its linears on bfloat16 weights (the profile shows no float32 GEMM)."""
    run = engine.runner(tiny, engine="compiled", precision=precision, **BUDGET)
    try:
        out = run(x)
        assert (run.engine, run.precision) == ("compiled", precision)
        assert out.logits.dtype == torch.float32
        assert rel_err(out.logits, reference(tiny, x, **BUDGET).logits.double().numpy()) <= rtol
        if precision == "bf16":
            with torch.profiler.profile(record_shapes=True) as prof:
                run(x)
            linear_inputs = {t for e in prof.events() if "linear" in e.name
                             for t in e.input_dtypes[:2]}  # (x, weight)
            assert linear_inputs == {"c10::BFloat16"}, linear_inputs
    finally:
        torch._dynamo.reset()


@pytest.mark.slow  # two exports (or compiles) of the digits model, 359 images per path: 15-60 s
@pytest.mark.parametrize(("name", "precision"), [("onnxruntime", "fp32"), ("torch", "bf16"),
                                                 ("compiled", "bf16"), ("onnxruntime", "int8")])
def test_bundled_digits_top1_agrees_with_float32(name, precision):
    """Top-1 agreement with float32 eager on the bundled digits test set >= 99 %, at the
    full budget and at the smallest (4 tokens, width 32, depth 1)."""
    x, _ = load_digits("test")
    x = torch.from_numpy(x)
    model = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL).eval()
    for budget in ({}, {"num_tokens": 4, "mat_dim": 32, "depth": 1}):
        ref = reference(model, x, **budget).logits[:, 0].argmax(-1)
        got = engine.runner(model, engine=name, precision=precision, **budget)(x)
        agreement = float((got.logits[:, 0].argmax(-1) == ref).double().mean())
        assert agreement >= 0.99, (budget, agreement)
