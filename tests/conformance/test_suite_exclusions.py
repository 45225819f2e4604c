"""Exclusion files: parsing, prefix matching, warnings for stale prefixes, and their effect
on a run (excluded tests are skipped and grouped by reason in the report)."""

from __future__ import annotations

import json

import pytest
from suite_helpers import outcomes, run_suite

from conformance.exclusions import load_exclusions, parse_exclusions

TOML = '''
[[exclusion]]
reason = "no NTK scaling yet"
tests = ["test_goldens.py::test_golden[cls-ntk-", "test_goldens.py::test_golden[distill-ntk]"]

[[exclusion]]
reason = "stale entry"
tests = ["test_goldens.py::test_golden[no-such-case]"]
'''


def test_toml_and_json_forms_parse_alike(tmp_path):
    (tmp_path / "x.toml").write_text(TOML)
    entries = [{"reason": "no NTK scaling yet",
                "tests": ["test_goldens.py::test_golden[cls-ntk-",
                          "test_goldens.py::test_golden[distill-ntk]"]},
               {"reason": "stale entry", "tests": ["test_goldens.py::test_golden[no-such-case]"]}]
    (tmp_path / "x.json").write_text(json.dumps({"exclusion": entries}))
    assert load_exclusions(tmp_path / "x.toml").entries == load_exclusions(
        tmp_path / "x.json").entries


def test_prefix_matching_and_unmatched_prefixes():
    exclusions = parse_exclusions({"exclusion": [{"reason": "r1", "tests": ["a.py::t[x", "b.py"]},
                                                 {"reason": "r2", "tests": ["c.py::u"]}]}, "f")
    assert exclusions.reason_for("a.py::t[x-1]") == "r1"
    assert exclusions.reason_for("b.py::anything") == "r1"
    assert exclusions.reason_for("a.py::t[y]") is None
    assert exclusions.unmatched(["a.py::t[x-1]", "b.py::v"]) == ["c.py::u"]


@pytest.mark.parametrize(("document", "problem"), [
    ({}, "top-level list 'exclusion'"),
    ({"exclusion": [{"tests": ["a"]}]}, "exclusion[0].reason must be a non-empty string"),
    ({"exclusion": [{"reason": " ", "tests": ["a"]}]}, "exclusion[0].reason"),
    ({"exclusion": [{"reason": "r", "tests": []}]}, "exclusion[0].tests must be a non-empty"),
    ({"exclusion": [{"reason": "r", "tests": "a"}]}, "exclusion[0].tests"),
    ({"exclusion": [{"reason": "r", "tests": ["a"], "until": 3}]}, "unknown keys ['until']"),
])
def test_invalid_files_name_the_problem(document, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_exclusions(document, "file.json")


def test_unknown_suffix_is_rejected(tmp_path):
    (tmp_path / "x.yaml").write_text("exclusion: []")
    with pytest.raises(ValueError, match=r"x.yaml: the name must end in \.toml or \.json"):
        load_exclusions(tmp_path / "x.yaml")


def test_run_with_exclusions(tmp_path):
    """Excluded tests are reported as excluded under their reason, others still run, and a
    prefix matching no test is a warning in the report and the terminal summary."""
    path = tmp_path / "exclusions.toml"
    path.write_text(TOML)
    done, report = run_suite("conformance.adapters.torch_port:float32", tmp_path, "-k", "ntk",
                             options=("--exclusions", str(path)))
    assert done.returncode == 0, done.stdout[-3000:]
    result = outcomes(report)
    excluded = sorted(i for i, o in result.items() if o == "excluded")
    assert excluded == sorted(report["exclusions"]["no NTK scaling yet"])
    assert "test_goldens.py::test_golden[cls-ntk-24]" in excluded
    assert "test_goldens.py::test_golden[distill-ntk]" in excluded
    assert result["test_goldens.py::test_golden[cls-flex-causal-ntk]"] == "passed"
    assert report["warnings"] == [f"exclusion prefix 'test_goldens.py::test_golden[no-such-case]' "
                                  f"({path}) matches no test"]
    assert "matches no test" in done.stdout and "excluded (4): no NTK scaling yet" in done.stdout
