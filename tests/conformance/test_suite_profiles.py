"""Precision profiles (TOL-1): one table, measured bounds the PyTorch model meets."""

from __future__ import annotations

import pytest

from conformance.measure_profiles import digits_agreement, golden_errors
from conformance.profiles import PROFILES, profile
from conformance.protocol import Capabilities
from conformance.tolerances import RTOL, default_tolerance


def test_profiles_are_the_tolerance_table():
    """TOL-1: the five profiles are the only rows of the table, in order of precision."""
    assert list(PROFILES) == ["float64", "float32", "bfloat16", "float16", "int8"]
    assert RTOL == {name: p.rtol for name, p in PROFILES.items()}
    assert default_tolerance("float16").rtol == 5e-3
    assert Capabilities("x", "1", "int8").dtype == "int8"  # a port may declare any profile
    with pytest.raises(ValueError, match="precision profile must be one of float64, float32, "
                                         "bfloat16, float16, int8, got 'fp8'"):
        profile("fp8")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_reduced_precision_model_meets_its_profile(precision):
    """TOL-1: the PyTorch model in float16, and with dynamically quantised int8 linears, is
    within its profile's rtol of the oracle's goldens (first 12 cases) and agrees with the
    oracle's class on the digits test split at least as often as the profile demands."""
    found = golden_errors(precision, limit=12)
    bound = PROFILES[precision]
    assert 0 < max(found["logits"]) <= bound.rtol
    digits = digits_agreement(precision)
    assert digits["top1_agreement"] >= bound.min_top1_agreement
    assert digits["oracle_accuracy"] - digits["accuracy"] <= bound.max_accuracy_drop
