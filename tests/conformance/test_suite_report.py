"""The report builder: per-clause counts, worst errors, failures with repro, strict JSON."""

from __future__ import annotations

import json

from conformance.report import Result, build_report, summary_lines, write_report


def _record(rel: float, repro=None, stage=None, section="accuracy") -> dict:
    return {"tolerance": {"rtol": 1e-4, "source": "TOL-1 float32"},
            "errors": {section: {"logits": {"quantity": "logits", "max_abs": rel * 3,
                                            "max_rel": rel, "rtol": 1e-4, "problem": "",
                                            "where": ""}}},
            "repro": repro, "first_divergent_stage": stage}


def _report(results):
    return build_report(results, implementation={"impl": "p.m:f", "name": "port",
                                                 "version": "1", "dtype": "float32"},
                        environment={"python": "3"}, profile="ci", seed=7, warnings=["w"],
                        duration_s=1.5)


RESULTS = [
    Result("a.py::t[1]", "passed", ("MASK-3", "TOL-1"), 0.1, record=_record(2e-6)),
    Result("a.py::t[2]", "failed", ("MASK-3", "MASK-2", "ROPE-2"), 0.2,
           "AssertionError: MASK-3: bad\nmore",
           record=_record(float("inf"), {"call_args": {"num_tokens": 5}},
                          {"stage": "block_1", "detail": "latents"}),
           failed_clauses=("MASK-3",)),
    Result("c.py::w", "passed", ("MAT-3",), 0.1, record=_record(3e-7, section="invariant")),
    Result("b.py::u", "skipped", ("EXIT-2",), 0.0, "port has no exit (capabilities.x)"),
    Result("b.py::v", "excluded", ("ROPE-3",), 0.0, "excluded: no NTK",
               exclusion_reason="no NTK"),
]


def test_counts_per_clause_and_totals():
    report = _report(RESULTS)
    assert report["totals"] == {"passed": 2, "failed": 1, "skipped": 1, "excluded": 1}
    # the failed test carries MASK-2 and ROPE-2 too, but only MASK-3's check failed
    assert "MASK-2" not in report["clauses"] and "ROPE-2" not in report["clauses"]
    assert report["clauses"]["MASK-3"] == {"passed": 1, "failed": 1, "skipped": 0,
                                           "excluded": 0, "failed_tests": ["a.py::t[2]"]}
    assert report["clauses"]["ROPE-3"]["excluded"] == 1
    assert report["exclusions"] == {"no NTK": ["b.py::v"]}


def test_worst_error_and_failure_repro():
    report = _report(RESULTS)
    accuracy, invariant = report["worst_errors"]["accuracy"], report["worst_errors"]["invariant"]
    assert accuracy["logits"]["test"] == "a.py::t[2]"
    assert accuracy["logits"]["max_rel"] is None  # inf is not strict JSON
    assert invariant["logits"]["test"] == "c.py::w" and invariant["logits"]["max_rel"] == 3e-7
    (failure,) = report["failures"]
    assert failure["clauses"] == ["MASK-3"]
    assert failure["test_clauses"] == ["MASK-3", "MASK-2", "ROPE-2"]
    assert failure["repro"] == {"call_args": {"num_tokens": 5}}
    assert failure["first_divergent_stage"]["stage"] == "block_1"


def test_json_is_strict_and_round_trips(tmp_path):
    report = _report(RESULTS)
    write_report(tmp_path / "r.json", report)
    assert json.loads((tmp_path / "r.json").read_text()) == report


def test_summary_lines():
    lines = summary_lines(_report(RESULTS))
    text = "\n".join(lines)
    assert lines[0].startswith("implementation: p.m:f (port 1, float32), profile ci, order "
                               "seed 7 (repeat with --seed 7)")
    assert "totals: 2 passed, 1 failed, 1 skipped, 1 excluded" in text
    assert "worst accuracy errors (port vs oracle/goldens" in text
    assert "worst invariant errors (port vs port" in text
    assert any(line.startswith("MASK-3") and line.endswith("FAIL") for line in lines)
    assert "FAILED a.py::t[2] [MASK-3]" in text
    assert "first divergent stage: block_1 (latents)" in text
    assert 'repro: {"call_args": {"num_tokens": 5}}' in text
    assert "excluded (1): no NTK" in text and "warning: w" in text
