"""The reduced-precision adapters (``conformance.adapters.precision``) through the suite.

bf16 (autocast) against TOL-1 bfloat16 and int8 (quantized ONNX graphs) against TOL-1
int8 (the profile each adapter declares), on the golden cases, the anytime goldens
and the argument errors of the ci profile: the subset that needs no new model config per
Hypothesis example (each would be a new export for int8). Both are slow (minutes: the
int8 port exports and quantizes one graph per golden configuration), so they run with
``-m slow``, not in the default CI run.
"""

from __future__ import annotations

import pytest
from suite_helpers import ROOT, run_suite

from conformance.tolerances import RTOL

pytest.importorskip("onnxruntime")
SUBSET = ("-k", "test_goldens or test_anytime or test_errors")
EXCLUSIONS = ROOT / "conformance" / "adapters" / "onnxruntime_ci.toml"


@pytest.mark.slow
@pytest.mark.parametrize(("factory", "rtol", "options"), [
    ("bfloat16", RTOL["bfloat16"], ()),
    ("int8", RTOL["int8"], ("--exclusions", str(EXCLUSIONS))),
])
def test_reduced_precision_port_passes_its_profile(tmp_path, factory, rtol, options):
    done, report = run_suite(f"conformance.adapters.precision:{factory}", tmp_path, *SUBSET,
                             options=("--profile", "ci", *options))
    assert report is not None, done.stdout[-6000:] + done.stderr[-3000:]
    assert report["totals"]["failed"] == 0 and done.returncode == 0, done.stdout[-6000:]
    assert report["totals"]["passed"] >= 30
    assert "GOLD-1" in {c for c, row in report["clauses"].items() if row["passed"]}
    assert report["worst_errors"]["accuracy"]["logits"]["max_rel"] <= rtol
