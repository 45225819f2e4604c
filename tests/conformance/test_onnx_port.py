"""The ONNX Runtime port (``conformance.adapters.onnxruntime``) through the conformance suite.

Runs ``python -m conformance --impl conformance.adapters.onnxruntime:factory --report ...``
on the ci profile, as a port author would, with the exclusion file
``conformance/adapters/onnxruntime_ci.toml`` (CI time only: the Hypothesis families that
draw a new configuration, hence a new ONNX export, per example; they pass in the full
run). Fails when any clause fails, and checks that every exclusion carries its reason.
"""

from __future__ import annotations

import pytest
from suite_helpers import ROOT, outcomes, run_suite

pytest.importorskip("onnxruntime")
EXCLUSIONS = ROOT / "conformance" / "adapters" / "onnxruntime_ci.toml"


def test_onnxruntime_port_conforms(tmp_path):
    """TOL-1, GOLD-1, ANY-1, ARG-8: the exported graphs run by ONNX Runtime pass the suite
    (ci profile): no failure in any clause; only the listed exclusions, each with a reason."""
    done, report = run_suite("conformance.adapters.onnxruntime:factory", tmp_path,
                             options=("--profile", "ci", "--exclusions", str(EXCLUSIONS)))
    assert report is not None, done.stdout[-6000:] + done.stderr[-3000:]
    failed = {clause: row for clause, row in report["clauses"].items() if row["failed"]}
    assert not failed and report["totals"]["failed"] == 0, (
        f"clauses failing: {sorted(failed)}\n" + done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert report["implementation"]["dtype"] == "float32"
    assert report["totals"]["passed"] >= 60
    assert {"GOLD-1", "ANY-1", "EXIT-3", "ARG-8", "ROPE-3", "PATCH-2", "DIST-3"} <= {
        clause for clause, row in report["clauses"].items() if row["passed"]}
    assert report["worst_errors"]["accuracy"]["logits"]["max_rel"] <= 1e-4
    assert report["exclusions"] and all(reason.strip() and reason != "?"
                                        for reason in report["exclusions"])
    skipped = [i for i, o in outcomes(report).items() if o == "skipped"]
    assert skipped, "the per-sample width and stage tests skip with their reasons"
