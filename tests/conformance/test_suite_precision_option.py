"""Issue 25 item 6: ``--profile float64|float32|bfloat16|float16|int8`` chooses the precision
profile whose TOL-1 tolerances apply; the report says which one and whether it was chosen or
declared by the port (``Capabilities.dtype``)."""

from __future__ import annotations

import pytest
from suite_helpers import run_suite

from conformance.__main__ import split_profiles
from conformance.profiles import PROFILES


def test_profile_names_split_by_kind():
    """One Hypothesis and one precision profile at most; defaults ci and the declared dtype."""
    assert split_profiles([]) == ("ci", None)
    assert split_profiles(["float16", "thorough"]) == ("thorough", "float16")
    assert split_profiles(["int8"]) == ("ci", "int8")
    with pytest.raises(ValueError, match="at most one precision .* got float16, int8"):
        split_profiles(["float16", "int8"])
    with pytest.raises(ValueError, match="at most one Hypothesis .* got ci, thorough"):
        split_profiles(["ci", "thorough"])


@pytest.mark.parametrize(("options", "expected"), [
    ((), {"profile": "float64", "source": "declared"}),
    (("--profile", "float16"), {"profile": "float16", "source": "chosen"}),
])
def test_report_names_the_precision_profile_and_applies_it(tmp_path, options, expected):
    """TOL-1: the oracle port (declared float64) checked under a chosen profile is compared
    with that profile's rtol, and the report records the profile and its source."""
    done, report = run_suite("conformance.adapters.oracle:factory", tmp_path, "-k",
                             "test_golden and cls-default", options=(
                                 "--isolation", "none", "--seed", "1", *options))
    assert done.returncode == 0, done.stdout[-3000:]
    used = PROFILES[expected["profile"]]
    assert report["precision"] == {**expected, "declared": "float64", "rtol": used.rtol,
                                   "measured": used.measured}
    assert report["profile"] == "ci"
    test = next(t for t in report["tests"] if t["id"].endswith("[cls-default]"))
    assert test["tolerance"] == {"rtol": used.rtol, "source": f"TOL-1 {used.name}"}
    assert f"precision profile {used.name} ({expected['source']}" in done.stdout
