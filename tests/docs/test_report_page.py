"""The site's conformance report page shows the numbers of the committed JSON report
(issue "documentation, third pass", wrong item 2: the page read an old report format and
showed null everywhere)."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
from sitegen import report  # noqa: E402

JSON_REPORT = ROOT / "docs" / "conformance" / "report-torch-float32.json"
ROW = re.compile(r"^\| `(?P<q>[^`]+)` \| (?P<rel>\S+) \| (?P<abs>\S+) \| (?P<rtol>\S+) \| "
                 r"`(?P<test>[^`]+)` \|$")


def _section(markdown: str, title: str) -> list[re.Match]:
    """The worst-error rows under the heading ``## title``."""
    body = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [m for line in body.splitlines() if (m := ROW.match(line))]


def _same(shown: str, expected) -> bool:
    if expected is None:
        return shown == "n/a"
    return math.isclose(float(shown), expected, rel_tol=1e-3, abs_tol=0.0)


@pytest.mark.parametrize("section", ["accuracy", "invariant"])
def test_worst_error_tables_match_the_json(section):
    """Every quantity of worst_errors[section] has a row with its numbers and its test."""
    expected = json.loads(JSON_REPORT.read_text())["worst_errors"][section]
    assert expected, f"the committed report has no {section} errors: nothing to check"
    rows = {m["q"]: m for m in _section(report.page(), report.WORST_SECTIONS[section])}
    assert set(rows) == set(expected)
    for quantity, err in expected.items():
        row = rows[quantity]
        for column, key in (("rel", "max_rel"), ("abs", "max_abs"), ("rtol", "rtol")):
            assert _same(row[column], err[key]), (quantity, column, row[column], err[key])
        assert row["test"] == err["test"]


def test_no_null_cells_for_a_complete_report():
    """No "null"/"None" cell: the symptom of reading another report format."""
    tables = report.page().split("## Worst errors", 1)[1].split("## Tests not passed")[0]
    assert "null" not in tables and "None" not in tables


def test_another_report_format_fails_the_build(tmp_path):
    """A report of another format is refused with its format named, not rendered empty."""
    old = json.loads(JSON_REPORT.read_text())
    old["format_version"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"report format .*1\).*update docs/sitegen/report.py"):
        report.load(path)
