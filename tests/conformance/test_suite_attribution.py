"""Issue 25: failures say the real cause first (headline, discrete consequences, Hypothesis
noise kept out of the report) and the report lists every clause of spec/CLAUSES.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from suite_helpers import ROOT

from conformance.check import Checker
from conformance.clauses import NOT_PORT_LEVEL, index
from conformance.report import Result, build_report, clean_message
from conformance.tolerances import Tolerance

HYPOTHESIS_DUMP = """AssertionError: MAT-1: width 1 output out of tolerance (TOL-1 float32)
  [MAT-1] logits: max_rel 0.00763 (rtol 0.0001), max_abs 0.0212
Failing test case: test_width_nesting(
    port=<suite_mutants.StatefulGrans object at 0x7f7cac18d1d0>,
    check=Checker(tolerance=Tolerance(rtol=0.0001, source='TOL-1 float32'),
Falsifying example: ...
"""


def _report(results):
    return build_report(results, implementation={"impl": "p.m:f"}, environment={},
                        profile="ci", seed=1)


def test_clause_list_equals_clauses_md():
    """Every id of spec/CLAUSES.md, in its order, has a clause_coverage row; ids the suite
    cannot test on a port say why; a clause whose tests were all skipped gives their reason."""
    ids = re.findall(r"^\| ([A-Z]+-\d+) \|", (ROOT / "spec" / "CLAUSES.md").read_text(),
                     re.MULTILINE)
    assert list(index()) == ids and len(ids) > 70
    assert set(NOT_PORT_LEVEL) <= set(ids)
    report = _report([Result("a::t", "passed", ("MASK-3",)),
                      Result("b::u", "skipped", ("EXIT-2",), message="no exit (capabilities.x)")])
    coverage = report["clause_coverage"]
    assert list(coverage) == ids
    assert coverage["MASK-3"]["status"] == "exercised"
    assert coverage["EXIT-2"] == {"status": "not exercised", "title": index()["EXIT-2"],
                                  "reason": "skipped: no exit (capabilities.x)"}
    assert coverage["LIM-3"]["reason"] == NOT_PORT_LEVEL["LIM-3"]
    assert coverage["NUM-1"]["reason"] == "no selected test carries it"


def test_hypothesis_dump_stays_out_of_the_message():
    """Issue 25 item 3: the report's message is the headline and the check lines, without
    Hypothesis' example dump, Checker reprs or object addresses."""
    cleaned = clean_message(HYPOTHESIS_DUMP)
    assert cleaned.splitlines()[0].startswith("MAT-1: width 1")
    assert "Failing test case" not in cleaned and " at 0x" not in cleaned
    flaky = clean_message('AssertionError("MASK-6: first g latents\\n  [MASK-6] x") '
                          "[single exception in FlakyFailure]")
    assert flaky == "MASK-6: first g latents\n  [MASK-6] x"
    # a located Checker failure keeps its own message, even when pytest's is a later example's
    located = {"message": "STATE-1 (seen by the MAT-1 check): ...", "failed_checks": []}
    report = _report([Result("t", "failed", ("MAT-1",), message=HYPOTHESIS_DUMP,
                             record=located, failed_clauses=("STATE-1",))])
    assert report["failures"][0]["message"] == located["message"]


def test_headline_names_the_charged_clause_then_the_check():
    """Issue 25 item 1: after a re-attribution the first line starts with the clause at fault,
    then the check that saw it and the reason."""
    check = Checker(Tolerance(1e-4, "TOL-1 float32"))
    check.start_case({})
    check.close("logits", np.ones(3), np.zeros(3) + 2, clause="MAT-1", versus="port")
    check.reattribute("STATE-1", "passes when every call gets a fresh handle")
    with pytest.raises(AssertionError) as info:
        check.assert_ok("width 1 output")
    assert str(info.value).splitlines()[0] == (
        "STATE-1 (seen by the MAT-1 check): width 1 output out of tolerance (TOL-1 float32): "
        "passes when every call gets a fresh handle")
    assert check.to_json()["message"] == str(info.value)


def test_discrete_mismatch_is_charged_to_the_diverged_logits():
    """Issue 25 item 10: wrong exit depths and classes next to diverged logits count against
    the logits' clause, not EXIT-2; alone, an exit-depth mismatch stays on EXIT-2."""
    check = Checker(Tolerance(1e-4, "TOL-1 float32"))
    check.start_case({})
    check.close("logits", np.ones((2, 1, 3)), np.zeros((2, 1, 3)), clause="READ-1")
    check.exact("exit_depths", np.array([1, 2]), np.array([2, 2]), clause="EXIT-2")
    check.charge_discrete()
    assert check.failed_clauses() == ["READ-1"]
    assert check.failed[1].seen_by == "EXIT-2"
    alone = Checker(Tolerance(1e-4, "TOL-1 float32"))
    alone.start_case({})
    alone.exact("exit_depths", np.array([1, 2]), np.array([2, 2]), clause="EXIT-2")
    alone.charge_discrete()
    assert alone.failed_clauses() == ["EXIT-2"]


def test_ddmin_keeps_exactly_the_calls_a_leak_needs():
    """Issue 25 item 2: delta debugging over a 40-call history whose leak needs calls 7 and
    31 (in that order) keeps exactly those two."""
    from conformance.handles import ddmin

    trials = []

    def reproduces(history):
        trials.append(len(history))
        return 7 in history and 31 in history and history.index(7) < history.index(31)

    assert ddmin(list(range(40)), reproduces) == [7, 31]
    assert len(trials) < 60


def test_leak_set_before_the_first_window_is_still_shrunk_to_its_call():
    """A mask cache set by call 10 of 300 and kept by the 289 calls after it: the replay
    window grows past the last MAX_REPLAY calls until it holds call 10, and delta debugging
    keeps that one call; a leak no window reproduces gives None."""
    from conformance.handles import MAX_REPLAY, ddmin, reproducing_window

    def reproduces(history):
        return 10 in history

    window = reproducing_window(list(range(300)), 300, reproduces)
    assert window is not None and 10 in window and len(window) < 300 - 10 + 2 * MAX_REPLAY
    assert window[-1] == 299
    assert ddmin(window, reproduces) == [10]
    assert reproducing_window(list(range(300)), 300, lambda history: False) is None
    # a leak within the last MAX_REPLAY calls replays only those
    assert reproducing_window(list(range(300)), 300, lambda history: 290 in history) == \
        list(range(300 - MAX_REPLAY, 300))


def _first_lines(report):
    return {f["id"]: f["message"].splitlines()[0] for f in report["failures"]}


@pytest.mark.slow
def test_stateful_port_headlines_blame_state_1(tmp_path):
    """Issue 25 items 1-3: with upstream's mask cache every failure's first line starts with
    STATE-1, invariants name their own check second, no Hypothesis dump is in a message,
    and every fresh-handle repro is minimal (one call: the cache holds the last call only)."""
    from suite_helpers import run_suite

    done, report = run_suite("suite_mutants:stateful", tmp_path, "-k",
                             "test_width_nesting or test_prefix or (test_golden and "
                             "(cls-default or cls-gran))", options=("--seed", "1"))
    assert done.returncode == 1 and report["failures"], done.stdout[-3000:]
    for test_id, first in _first_lines(report).items():
        assert first.startswith("STATE-1"), (test_id, first)
    for failure in report["failures"]:
        assert "Failing test case" not in failure["message"] and " at 0x" not in failure["message"]
        if failure["repro"].get("check") == "fresh-handle":
            assert len(failure["repro"]["history"]) == 1, failure["repro"]
            calls = re.findall(r"^(?:after = )?port\.\w+\(handle,", failure["repro_python"],
                               re.MULTILINE)
            assert len(calls) == 2  # the one earlier call, then the call itself
    widths = [m for i, m in _first_lines(report).items() if "width_nesting" in i]
    assert all(m.startswith("STATE-1 (seen by the MAT-1 check)") for m in widths)


@pytest.mark.slow
@pytest.mark.parametrize(("mutant", "subset", "clause"), [
    ("rope_halves", "test_golden and (cls-default or cls-exit or cls-full-default)", "ROPE-1"),
    ("full_keeps_mask", "test_golden and cls-full", "MASK-1"),
])
def test_fault_is_charged_to_its_rule(tmp_path, mutant, subset, clause):
    """Issue 25 item 10: RoPE on halves is ROPE-1 (not READ-1, and wrong exit depths are not
    EXIT-2/3), a "full" layer keeping the mask is MASK-1 (not BLOCK-1): the first divergent
    stage is right with one latent, which names the rule."""
    from suite_helpers import failed_clauses, run_suite

    done, report = run_suite(f"suite_mutants:{mutant}", tmp_path, "-k", subset,
                             options=("--seed", "1"))
    assert done.returncode == 1 and report["failures"], done.stdout[-3000:]
    assert failed_clauses(report) == {clause}
    assert all(m.startswith(f"{clause} (seen by the") for m in _first_lines(report).values())


@pytest.mark.slow
def test_two_call_leak_gives_a_two_call_repro_that_runs(tmp_path):
    """Issue 25 item 2: a leak needing exactly two earlier calls is reported with a history
    of exactly two calls, and the printed Python program reproduces it."""
    from suite_helpers import HERE, run_suite

    done, report = run_suite("suite_mutants:two_call_leak", tmp_path, "-k",
                             "test_golden and (cls-gran or cls-offgrid)",
                             options=("--seed", "1"))
    assert done.returncode == 1 and report["failures"], done.stdout[-3000:]
    for failure in report["failures"]:
        assert failure["clauses"] == ["STATE-1"]
        assert len(failure["repro"]["history"]) == 2
    program = tmp_path / "repro.py"
    program.write_text(report["failures"][0]["repro_python"])
    ran = subprocess.run([sys.executable, str(program)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": f"{HERE}:{ROOT}"})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert float(ran.stdout.split(":")[-1]) > 1e-3
