"""The PyTorch model against the float64 NumPy oracle (TOL-1) on random tiny models.

Each example draws a config over every switch (tiny_configs), writes random weights
with ``reference_numpy.save_checkpoint``, loads them with ``from_pretrained`` and runs
random images and call arguments through both implementations. Clauses covered:
PATCH-1..3, LAT-1..2, READ-1, BLOCK-1..3, MASK-1..5, ROPE-1..4, MAT-1..4, DEPTH-1,
EXIT-1..4, WRITE-1, HEAD-1, OUT-1, DIST-1..3, CKPT-4, TOL-1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_helpers import (
    RTOL,
    call_args,
    checkpoint,
    images,
    model_class,
    rel_err,
    run,
    tiny_config,
    tiny_configs,
)

import reference_numpy as rn

WORST = {"float64": 0.0, "float32": 0.0}


def _grid(draw, config):
    """Image size: the trained grid, or another grid (pos_embed resampling, PATCH-2)."""
    P = config["patch_size"]
    if draw(st.booleans()):
        return config["img_size"], config["img_size"]
    return P * draw(st.integers(1, 5)), P * draw(st.integers(1, 5))


def _compare(out, ref: rn.Trace, dtype: str, *, exits_may_differ: bool = False) -> float:
    """Largest TOL-1 error over logits, features and every stage; exit depths exact."""
    rtol = RTOL[dtype]
    if not exits_may_differ:
        np.testing.assert_array_equal(out.exit_depths.numpy(), ref.exit_depths)
    assert out.exit_depths.dtype == torch.int64
    errors = {"logits": rel_err(out.logits, ref.logits)}
    if ref.features is not None:
        errors["features"] = rel_err(out.features, ref.features)
    else:
        assert out.features is None
    if out.stages is not None:
        assert list(out.stages) == list(ref.stages)
        errors.update({k: rel_err(out.stages[k], ref.stages[k]) for k in ref.stages})
    worst = max(errors.values())
    assert worst <= rtol, errors
    WORST[dtype] = max(WORST[dtype], worst)
    return worst


def _draw_case(data):
    """A random tiny config, its oracle weights written as a checkpoint and loaded by the
    PyTorch model (float32), a random image batch and random call arguments."""
    config = data.draw(tiny_configs())
    B = data.draw(st.integers(1, 3))
    args = data.draw(call_args(config, B))
    H, W = _grid(data.draw, config)
    x = images(B, config, H, W, seed=data.draw(st.integers(0, 99)))
    with checkpoint(config, seed=data.draw(st.integers(0, 99))) as (path, weights):
        model = model_class(config).from_pretrained(path)
    return config, weights, x, args, model


@settings(max_examples=24)
@given(data=st.data())
def test_float64_matches_oracle(data):
    """TOL-1 float64 (1e-10) for every stage, logits, features and exit depths, over random
    configs (MASK-1..5, ROPE-1..4, MAT-1..4, DEPTH-1, EXIT-1..4, PATCH-2, DIST-1..3, OUT-1)."""
    config, weights, x, args, model = _draw_case(data)
    model = model.double()
    ref = rn.trace(weights, config, x, **args)
    out = run(model, x, torch.float64, return_stages=True, **args)
    _compare(out, ref, "float64")


def _exit_depth_accepted(weights, config, x, args, out, ref) -> None:
    """TOL-1 exit rule: a differing exit depth is allowed only when the oracle's deciding
    confidence is within rtol of tau, and then the logits must equal the oracle's
    fixed-depth logits at the port's depth (EXIT-4)."""
    tau = args["depth_tau"]
    pairs = zip(out.exit_depths.tolist(), ref.exit_depths.tolist(), strict=True)
    for b, (mine, theirs) in enumerate(pairs):
        if mine == theirs:
            continue
        d = min(mine, theirs)
        fixed = {k: v for k, v in args.items() if k not in ("depth_tau", "exit_policy")}
        logits = rn.classify(weights, config, x, depth=d, **fixed)
        conf = rn.model.confidence(logits)
        decisive = conf.mean() if args["exit_policy"] == "batch_mean" else conf[b]
        assert abs(decisive - tau) <= RTOL["float32"], (b, mine, theirs, decisive, tau)
        fixed_ref = rn.classify(weights, config, x, depth=mine, **fixed)
        assert rel_err(out.logits[b], fixed_ref[b]) <= RTOL["float32"]


@settings(max_examples=24)
@given(data=st.data())
def test_float32_matches_oracle(data):
    """TOL-1 float32 (1e-4) for every stage, logits and features over random configs and
    call arguments; exit depths exact except near the threshold (TOL-1 rule 1, EXIT-4)."""
    config, weights, x, args, model = _draw_case(data)
    ref = rn.trace(weights, config, x, **args)
    out = run(model, x, torch.float32, return_stages=True, **args)
    same_exits = np.array_equal(out.exit_depths.numpy(), ref.exit_depths)
    if same_exits:
        _compare(out, ref, "float32")
    else:
        _exit_depth_accepted(weights, config, x, args, out, ref)


@pytest.mark.parametrize("kind", ["classification", "distill"])
def test_float32_error_on_the_tiny_model_is_reported(kind, capsys):
    """TOL-1: worst float32 error of the tiny published-shape model over several budgets
    (printed for the report) stays within 1e-4 (MAT-1, DEPTH-1, MASK-3)."""
    config = tiny_config(kind)
    x = images(4, config, seed=3)
    worst = 0.0
    with checkpoint(config, seed=5) as (path, weights):
        model = model_class(config).from_pretrained(path)
    for args in [{}, {"num_tokens": 8, "mat_dim": 4}, {"depth": 2, "mat_dim": [4, 8, 16, 5]},
                 {"num_tokens": 24}, {"token_grans": [3, 5]}]:
        ref = rn.trace(weights, config, x, **args)
        worst = max(worst, _compare(run(model, x, torch.float32, return_stages=True, **args),
                                    ref, "float32"))
    with capsys.disabled():
        print(f"\n[float32 vs oracle, {kind} tiny model] worst TOL-1 error {worst:.2e}")


def test_worst_errors_so_far_are_printed(capsys):
    """TOL-1: prints the worst float64/float32 errors seen by the property tests above."""
    with capsys.disabled():
        print(f"\n[vs oracle] worst float64 error {WORST['float64']:.2e}, "
              f"worst float32 error {WORST['float32']:.2e}")
    assert WORST["float64"] <= RTOL["float64"] and WORST["float32"] <= RTOL["float32"]
