"""Issue 25 item 12: a failing property is located once, on Hypothesis' final replay of the
shrunk example, not at every shrink step; the report keeps the shrunk example's location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.check import Checker
from conformance.handles import SharedHandle, check_on_shared_handle, final_example
from conformance.tolerances import Tolerance


def test_outside_hypothesis_every_example_is_final():
    """The goldens (no Hypothesis) are located at once."""
    assert final_example()


def test_failure_is_located_once_on_the_shrunk_example():
    """A property failing for every x >= 10 fails many examples while Hypothesis searches
    and shrinks; locate() runs exactly once, for x = 10 (the shrunk example), and the
    checker's recorded failure is that located one."""
    shared = SharedHandle(port=None, checkpoint={}, directory=Path("."), kind="classification",
                          handle=object())
    check = Checker(Tolerance(1e-4, "TOL-1 float32"))
    located, failing = [], []

    def locate():
        located.append(check.repro["x"])
        check.reattribute("MAT-1", "located")

    @settings(database=None, derandomize=True, max_examples=50)
    @given(x=st.integers(0, 1000))
    def prop(x):
        check.start_case({"x": x})
        if x >= 10:
            failing.append(x)

        def body(checker):
            checker.close("logits", np.array([float(x >= 10)]), np.zeros(1), clause="TOL-1")

        check_on_shared_handle(check, shared, body, "x", locate=locate)

    with pytest.raises(AssertionError) as info:
        prop()
    assert len(failing) > 3  # search and shrinking failed several examples
    assert located == [10]
    assert str(info.value).startswith("MAT-1 (seen by the TOL-1 check): x out of tolerance")
    assert check.to_json()["repro"] == {"x": 10} and not check.provisional
    assert check.to_json()["message"].startswith("MAT-1")
