"""Family 1: the committed golden vectors (GOLD-1), computed by the oracle.

One test per manifest case; its clauses are listed in the manifest. A port
that lacks a capability the case needs is skipped with the reason. Every case
runs on the shared handle of its checkpoint, in the run's seeded random order
(with the invariants), so state leaking between calls shows up here (STATE-1).
A failure names the clause it is located at (``conformance.verify``).
"""

from __future__ import annotations

import pytest

from conformance.goldens import (
    GOLDENS_DIR,
    case_tensors,
    case_tolerance,
    load_manifest,
    split_stages,
)
from conformance.handles import Images
from conformance.verify import Expected, check_call

from .support import precision_profile, read_config, require

MANIFEST = load_manifest()


def _params() -> list:
    return [pytest.param(case, id=case["id"],
                         marks=pytest.mark.clauses("GOLD-1", "TOL-1", *case["clauses"]))
            for case in MANIFEST["cases"]]


@pytest.mark.parametrize("case", _params())
def test_golden(case, port, handles, check, request):
    """GOLD-1, TOL-1: the port reproduces a golden case (logits, features, exit depths)
    within the tolerance; the case's own clauses come from its manifest entry."""
    shared = handles.shared(case["checkpoint"])
    config = read_config(shared.directory)
    tensors = case_tensors(GOLDENS_DIR, case)
    images = Images(tensors["images"], {"golden": case["id"]})
    require(port, config, case["call_args"], images.array.shape[2:])
    check.tolerance = case_tolerance(case, check.tolerance, precision_profile(request.config))
    check.start_case({"golden": case["id"], "checkpoint": case["checkpoint"],
                      "call_args": case["call_args"]})
    expected = Expected(tensors["logits"], tensors["exit_depths"], tensors.get("features"),
                        lambda: split_stages(tensors))
    check_call(check, shared, images, case["call_args"], expected,
               what=f"golden {case['id']}", config=config, oracle_dir=shared.directory)
