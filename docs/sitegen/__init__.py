"""Build-time helpers of the documentation site, called by ``docs/hooks.py``.

``sources`` says which repository files the site publishes and where, ``clauses``
gives clause ids stable anchors and links, ``figures`` draws the learner figures
from the oracle, ``report`` renders a conformance report, ``cli`` captures the
real output of the command-line examples, ``annotated`` shows each stage's oracle
source with its outputs on a bundled canvas, ``archive`` packs the goldens for
download and ``worked`` renders worked examples from them. None of it is published
as a page.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The oracle and the traceability module are imported from this checkout, whether or
# not the project is pip-installed and whatever the current directory is.
for folder in (ROOT, ROOT / "tests" / "spec"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
