"""CI portability (issue 7, GOLD-1): the goldens manifest holds floats computed with BLAS
(``exit_margin``, ``depth_tau`` "mid" thresholds), which may differ in the last bits on
another CPU. They are compared with a tolerance; everything the generator writes from
constants (ids, files, clauses, call arguments) is compared exactly."""

from __future__ import annotations

import json
import shutil

import numpy as np

from conformance.goldens import GOLDENS_DIR, compare_goldens, manifest_differences


def _case(**changes):
    case = {"id": "cls-exit", "call_args": {"depth_tau": 0.4567, "exit_policy": "batch_mean"},
            "exit_margin": 0.34365519402555417, "clauses": ["EXIT-2"], "image_shape": [2, 3]}
    case.update(changes)
    return case


def test_last_bit_differences_of_computed_floats_are_tolerated():
    """GOLD-1: the committed vs regenerated exit_margin of the CI failure in issue 7."""
    old = {"cases": [_case()]}
    new = {"cases": [_case(exit_margin=0.3436551940255541)]}
    assert manifest_differences(old, new) == []
    nudged = {"cases": [_case(exit_margin=float(np.nextafter(0.34365519402555417, 1.0)))]}
    assert manifest_differences(old, nudged) == []


def test_real_changes_are_still_reported():
    """GOLD-1: the tolerance is tight, and written values stay exact."""
    old = {"cases": [_case()]}
    for changed, where in [
        (_case(exit_margin=0.3437), ".cases[0].exit_margin"),
        (_case(call_args={"depth_tau": 0.4569, "exit_policy": "batch_mean"}),
         ".cases[0].call_args.depth_tau"),
        (_case(call_args={"depth_tau": 0.4567, "exit_policy": "per_sample"}),
         ".cases[0].call_args.exit_policy"),
        (_case(clauses=["EXIT-3"]), ".cases[0].clauses[0]"),
        (_case(image_shape=[2, 4]), ".cases[0].image_shape[1]"),
        (_case(exit_margin=None), ".cases[0].exit_margin"),
    ]:
        problems = manifest_differences(old, {"cases": [changed]})
        assert len(problems) == 1 and problems[0].startswith(where), (where, problems)


def test_compare_goldens_tolerates_a_regenerated_margin(tmp_path):
    """GOLD-1: a goldens copy whose manifest margins differ by one ulp compares clean; a
    margin changed in the fourth digit does not."""
    copy = tmp_path / "goldens"
    shutil.copytree(GOLDENS_DIR, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    with_margin = [c for c in manifest["cases"] if c.get("exit_margin") is not None]
    assert with_margin, "the goldens have no early-exit case"
    for case in with_margin:
        case["exit_margin"] = float(np.nextafter(case["exit_margin"], 2.0))
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    assert compare_goldens(GOLDENS_DIR, copy) == []
    with_margin[0]["exit_margin"] *= 1.001
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    problems = compare_goldens(GOLDENS_DIR, copy)
    assert len(problems) == 1 and "exit_margin" in problems[0]
