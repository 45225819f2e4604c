"""Family 2: Hypothesis properties, port vs oracle on drawn configs, weights, inputs and calls.

Each example writes a checkpoint with ``reference_numpy.save_checkpoint`` into a
temporary directory; the port loads it and the oracle reads the same file, so
both see identical (float32-rounded) weights. The drawn scenario is the repro
of a failure; the failure names the clause it is located at (the argument whose
call alone fails, else the first divergent stage, else TOL-1; see
``conformance.verify``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import exits
from conformance.handles import Images
from conformance.strategies import materialize, scenarios

from .support import check_against_oracle, oracle_expected, scratch_dir

# Every clause a full forward pass exercises.
FORWARD = ("NUM-1", "NUM-2", "NUM-3", "ATTN-1", "ATTN-2", "PATCH-1", "PATCH-2", "PATCH-3",
           "LAT-1", "LAT-2", "READ-1", "BLOCK-1", "BLOCK-2", "BLOCK-3", "MASK-1", "MASK-2",
           "MASK-3", "MASK-4", "MASK-5", "ROPE-1", "ROPE-2", "ROPE-3", "ROPE-4", "MAT-1",
           "MAT-2", "MAT-3", "MAT-4", "DEPTH-1", "WRITE-1", "HEAD-1", "OUT-1", "CKPT-1",
           "CKPT-2", "CKPT-3", "TOL-1")


def _require_kind(port, kind: str) -> None:
    if kind not in port.capabilities.kinds:
        pytest.skip(f"port does not load {kind} models (capabilities.kinds)")


def _check_scenario(port, check, scenario) -> None:
    """Write the scenario's checkpoint and compare the port with the oracle."""
    check.start_case(scenario)
    with scratch_dir() as tmp:
        directory, images = materialize(scenario, tmp)
        check_against_oracle(port, check, directory,
                             Images(images, {"image_shape": scenario["image_shape"],
                                             "image_seed": scenario["image_seed"]}),
                             scenario["call_args"], scenario)


def _check_drawn_scenario(port, check, data, kind: str) -> None:
    """Draw a scenario of ``kind`` and compare the port with the oracle on it."""
    _require_kind(port, kind)
    _check_scenario(port, check, data.draw(scenarios(port.capabilities, kind)))


@pytest.mark.clauses(*FORWARD)
@given(data=st.data())
def test_classification_matches_oracle(port, check, data):
    """All forward-pass clauses (NUM-1..3, ATTN-1..2, PATCH-1..3, LAT-1..2, READ-1, BLOCK-1..3,
    MASK-1..5, ROPE-1..4, MAT-1..4, DEPTH-1, WRITE-1, HEAD-1, OUT-1, CKPT-1..3) within TOL-1:
    a ClassificationAdaPerceiver matches the oracle for drawn configs and call arguments."""
    _check_drawn_scenario(port, check, data, "classification")


@pytest.mark.clauses(*FORWARD, "DIST-1", "DIST-2", "DIST-3")
@given(data=st.data())
def test_distill_matches_oracle(port, check, data):
    """DIST-1..3 and the forward-pass clauses within TOL-1: a DistillAdaPerceiver's logits and
    features match the oracle for drawn configs and call arguments."""
    _check_drawn_scenario(port, check, data, "distill")


@pytest.mark.clauses("EXIT-1", "EXIT-2", "EXIT-3", "EXIT-4", "ARG-4", "ARG-6", "TOL-1")
@given(data=st.data())
def test_early_exit_matches_oracle(port, check, data):
    """EXIT-1..4: with depth_tau and either exit policy the port's logits and per-sample exit
    depths match the oracle. tau is drawn from the middle of gaps between the oracle's
    confidences (at least exits.MIN_MARGIN away from each), so rounding cannot flip a decision."""
    _require_kind(port, "classification")
    if not port.capabilities.exit_policies:
        pytest.skip("port has no confidence early exit (capabilities.exit_policies)")
    scenario = data.draw(scenarios(port.capabilities, "classification"))
    fixed = {k: v for k, v in scenario["call_args"].items() if k != "depth"}
    policy = data.draw(st.sampled_from(sorted(port.capabilities.exit_policies)))
    with scratch_dir() as tmp:
        directory, images = materialize(scenario, tmp)
        depth = scenario["config"]["depth"]
        conf = exits.confidence_table(
            lambda d: oracle_expected(directory, images, {**fixed, "depth": d}).logits, depth)
        taus = [0.0] + [tau for tau, _ in exits.separated_taus(conf, policy)]
    scenario["call_args"] = {**fixed, "exit_policy": policy,
                             "depth_tau": data.draw(st.sampled_from(taus))}
    _check_scenario(port, check, scenario)


@pytest.mark.clauses("CKPT-4", "TOL-1")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@given(data=st.data())
def test_half_precision_checkpoint_matches_oracle(port, check, data, dtype):
    """CKPT-4: a checkpoint stored as float16 or bfloat16 is decoded exactly: the port's
    outputs match the oracle reading the same file."""
    _require_kind(port, "classification")
    scenario = data.draw(scenarios(port.capabilities, "classification"))
    scenario["checkpoint_dtype"] = dtype
    _check_scenario(port, check, scenario)
