"""Every clause of ``spec/CLAUSES.md`` and whether a run exercised it on the port.

The report's ``clause_coverage`` lists each id of the index, in its order, as
``exercised`` (a test carrying it passed or failed) or ``not exercised`` with the reason:
every test carrying it was skipped (their skip reasons) or excluded (the exclusion
reasons), no selected test carries it (``-k``), or the suite has no port-level test of
it (``NOT_PORT_LEVEL`` says why). "126 passed" therefore never hides an unchecked clause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# spec/CLAUSES.md in a checkout; conformance/spec/CLAUSES.md in the wheel (a packaged copy).
INDEX_FILES = (Path(__file__).parent.parent / "spec" / "CLAUSES.md",
               Path(__file__).parent / "spec" / "CLAUSES.md")
INDEX_ROW = re.compile(r"^\|\s*([A-Z]+-\d+)\s*\|\s*[^|\s]+\s*\|\s*(.*?)\s*\|\s*$", re.MULTILINE)

# Clauses no suite test can check through the adapter protocol, and why.
NOT_PORT_LEVEL: dict[str, str] = {
    "ANY-5": "reported FLOP costs are not part of the adapter protocol (anytime returns logits)",
    "ANY-6": "early exit from the grid is a library feature of the reference, not in the "
             "adapter protocol",
    "LIM-3": "the refusal threshold is the memory of the port's device: a call above it "
             "needs tens of GiB of input in the suite, or minutes on a port whose attention "
             "is linear in memory; checked on this project's implementations (tests/)",
    "PRE-6": "decoding an image file (Pillow's convert) comes before the arrays the adapter "
             "protocol passes; checked on this project's implementations (tests/)",
    "PRE-7": "the canvas of this project's bundled cluttered-digits model, not a port's "
             "preprocessing; checked on this project's implementations (tests/)",
}


def index() -> dict[str, str]:
    """id -> one-line summary for every row of ``spec/CLAUSES.md``, in order."""
    for path in INDEX_FILES:
        if path.is_file():
            return dict(INDEX_ROW.findall(path.read_text(encoding="utf-8")))
    raise FileNotFoundError("spec/CLAUSES.md not found (looked in "
                            f"{', '.join(str(p) for p in INDEX_FILES)})")


def coverage(tests: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """id -> ``{"status": "exercised" | "not exercised", "reason": str, "title": str}`` for
    every clause of the index, from the report's test entries (id, outcome, clauses,
    message)."""
    by_clause: dict[str, list[Mapping[str, Any]]] = {}
    for test in tests:
        for clause in test["clauses"]:
            by_clause.setdefault(clause, []).append(test)
    result = {}
    for clause, title in index().items():
        carried = by_clause.get(clause, [])
        ran = [t for t in carried if t["outcome"] in ("passed", "failed")]
        if ran:
            status, reason = "exercised", f"{len(ran)} test(s) ran"
        elif carried:
            outcomes = "/".join(sorted({t["outcome"] for t in carried}))
            reasons = "; ".join(sorted({t["message"] for t in carried if t.get("message")}))
            status, reason = "not exercised", f"{outcomes}: {reasons}" if reasons else outcomes
        elif clause in NOT_PORT_LEVEL:
            status, reason = "not exercised", NOT_PORT_LEVEL[clause]
        else:
            status, reason = "not exercised", "no selected test carries it"
        result[clause] = {"status": status, "reason": reason, "title": title}
    return result
