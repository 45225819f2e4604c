"""Family 1: the committed golden vectors (GOLD-1), computed by the oracle.

One test per manifest case; its clauses are listed in the manifest. A port
that lacks a capability the case needs is skipped with the reason.
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
from conformance.verify import Expected, check_call, kind_of

from .support import read_config, require

MANIFEST = load_manifest()


def _params() -> list:
    return [pytest.param(case, id=case["id"],
                         marks=pytest.mark.clauses("GOLD-1", "TOL-1", *case["clauses"]))
            for case in MANIFEST["cases"]]


@pytest.mark.parametrize("case", _params())
def test_golden(case, port, check):
    """GOLD-1, TOL-1: the port reproduces a golden case (logits, features, exit depths)
    within the tolerance; the case's own clauses come from its manifest entry."""
    directory = GOLDENS_DIR / MANIFEST["checkpoints"][case["checkpoint"]]["path"]
    config = read_config(directory)
    tensors = case_tensors(GOLDENS_DIR, case)
    images = tensors["images"]
    require(port, config, case["call_args"], images.shape[2:])
    check.tolerance = case_tolerance(case, check.tolerance, port.capabilities.dtype)
    check.start_case({"golden": case["id"], "checkpoint": case["checkpoint"],
                      "call_args": case["call_args"]})
    expected = Expected(tensors["logits"], tensors["exit_depths"], tensors.get("features"),
                        lambda: split_stages(tensors))
    check_call(check, port, port.load(str(directory)), kind_of(config), images,
               case["call_args"], expected, clauses=", ".join(case["clauses"]),
               what=f"golden {case['id']}")
