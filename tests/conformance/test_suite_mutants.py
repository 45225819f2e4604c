"""The suite catches wrong ports and skips (never passes or fails) what a port does not declare.

Mutants are in suite_mutants.py; each wraps the PyTorch float32 adapter.
"""

from __future__ import annotations

from suite_helpers import failed_clauses, outcomes, run_suite


def test_upstream_mask_cache_fails_state_1(tmp_path):
    """STATE-1: a port with upstream's mask cache (granularities overwritten by the last
    call) fails the statelessness test with a message naming STATE-1, and the report
    attributes the failure to STATE-1 with a repro."""
    done, report = run_suite("suite_mutants:stateful", tmp_path, "-k", "stateless")
    assert done.returncode == 1
    result = outcomes(report)
    test_id = "test_invariants.py::test_stateless_after_other_granularities"
    assert result[test_id] == "failed"
    failure = next(f for f in report["failures"] if f["id"] == test_id)
    assert failure["message"].startswith("STATE-1")
    assert failure["repro"]["call_args"] == {"num_tokens": 32}
    assert test_id in report["clauses"]["STATE-1"]["failed_tests"]


def test_ignored_width_fails_goldens_with_divergent_stage(tmp_path):
    """MAT-1, GOLD-1: a port that ignores mat_dim fails the width goldens; each failure
    reports its call arguments and block_0 as the first divergent stage (the FFN of the
    first block is where the widths differ), while full-width goldens pass."""
    done, report = run_suite("suite_mutants:ignores_width", tmp_path, "-k", "test_golden")
    assert done.returncode == 1
    result = outcomes(report)
    assert result["test_goldens.py::test_golden[cls-width-4]"] == "failed"
    assert result["test_goldens.py::test_golden[cls-width-16]"] == "passed"  # 16 == D
    assert result["test_goldens.py::test_golden[cls-default]"] == "passed"
    failure = next(f for f in report["failures"]
                   if f["id"] == "test_goldens.py::test_golden[cls-width-4]")
    assert failure["first_divergent_stage"]["stage"] == "block_0"
    assert failure["repro"] == {"golden": "cls-width-4", "checkpoint": "cls-flex-block",
                                "call_args": {"mat_dim": 4}}
    assert "MAT-1" in failure["clauses"]
    # located by re-running mat_dim alone: scalar widths are MAT-1, per-sample lists MAT-3
    assert failed_clauses(report) <= {"MAT-1", "MAT-3"} and "MAT-1" in failed_clauses(report)


def test_missing_capabilities_are_skipped_with_reasons(tmp_path):
    """A port declaring few capabilities passes or skips, never fails: every skip names the
    missing capability, and capability-independent goldens still run. Without
    capabilities.anytime the grid tests (ANY-1) skip."""
    done, report = run_suite("suite_mutants:minimal", tmp_path, "-k",
                             "goldens or errors or prefix or exit or distill or anytime")
    assert done.returncode == 0, done.stdout[-4000:]
    assert report["totals"]["failed"] == 0
    skips = [t for t in report["tests"] if t["outcome"] == "skipped"]
    assert skips and all("capabilities." in t["message"] for t in skips)
    result = outcomes(report)
    assert result["test_goldens.py::test_golden[cls-full-default]"] == "passed"
    assert result["test_goldens.py::test_golden[cls-flex-causal-default]"] == "skipped"
    assert result["test_goldens.py::test_golden[cls-image-up]"] == "skipped"
    assert result["test_anytime.py::test_anytime_goldens[grid-cls-full]"] == "skipped"
    assert result["test_anytime.py::test_anytime_entries_equal_single_runs"] == "skipped"
