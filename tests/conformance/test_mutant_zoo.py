"""Issue 25 item 14: the mutant zoo. The PyTorch port with one typical porting fault each
(``suite_mutants.MUTANTS``) must fail, charged to the fault's clause: the first line of every
failure names it first. The default run checks each mutant on the goldens that catch it,
in this process, through the suite's own checking and locating code (what
``test_goldens.py::test_golden`` runs); the slow tests run the ``conformance`` command, on
the focused subset and on the whole suite."""

from __future__ import annotations

import json
import re

import pytest
import suite_mutants
from suite_helpers import ROOT, failed_clauses, run_suite

from conformance import callargs
from conformance.check import Checker
from conformance.goldens import GOLDENS_DIR, case_tensors, load_manifest, split_stages
from conformance.handles import HandlePool, Images
from conformance.tolerances import default_tolerance
from conformance.verify import Expected, check_call

MANIFEST = load_manifest()
CASES = {case["id"]: case for case in MANIFEST["cases"]}
GOLDEN_MUTANTS = [name for name, m in suite_mutants.MUTANTS.items() if m.goldens]


def golden_failures(port, case_ids) -> dict[str, str]:
    """Run the goldens ``case_ids`` in order on one shared handle per checkpoint, as the suite
    does; case id -> first line of its failure (the passing cases are absent)."""
    handles = HandlePool(port)
    failures = {}
    for case_id in case_ids:
        case = CASES[case_id]
        shared = handles.shared(case["checkpoint"])
        tensors = case_tensors(GOLDENS_DIR, case)
        check = Checker(default_tolerance(port.capabilities.dtype))
        check.start_case({"golden": case_id})
        expected = Expected(tensors["logits"], tensors["exit_depths"], tensors.get("features"),
                            lambda t=tensors: split_stages(t))
        config = json.loads((shared.directory / "config.json").read_text())
        try:
            check_call(check, shared, Images(tensors["images"], {"golden": case_id}),
                       callargs.decode(case["call_args"]), expected, what=f"golden {case_id}",
                       config=config, oracle_dir=shared.directory)
        except AssertionError:
            failures[case_id] = check.to_json()["message"].splitlines()[0]
    return failures


@pytest.mark.parametrize("name", GOLDEN_MUTANTS)
def test_mutant_fails_its_goldens_charged_to_its_clause(name):
    """Every mutant fails the last of its goldens (earlier ones may prepare a state leak),
    and the first line of each failure names the fault's clause first."""
    mutant = suite_mutants.MUTANTS[name]
    failures = golden_failures(getattr(suite_mutants, name)(), mutant.goldens)
    assert mutant.goldens[-1] in failures, failures
    for case_id, first in failures.items():
        assert first.startswith(f"{mutant.clause} ") or first.startswith(f"{mutant.clause}:"), \
            (case_id, first)


def test_readme_table_is_the_mutant_registry():
    """The table 'Typical porting faults and the clause the report names' in
    conformance/README.md lists exactly the registry's faults and clauses, in its order."""
    text = (ROOT / "conformance" / "README.md").read_text()
    section = text.split("## Typical porting faults and the clause the report names", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| ([A-Z]+-\d+) \| .+ \|$", section, re.MULTILINE)
    assert [(name, fault, clause) for name, fault, clause in rows] == [
        (name, m.fault, m.clause) for name, m in suite_mutants.MUTANTS.items()]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(suite_mutants.MUTANTS))
def test_command_charges_the_fault_on_its_subset(tmp_path, name):
    """The ``conformance`` command on the mutant's focused subset exits 1 and the report
    charges only the fault's clause, named first in every failure's first line."""
    mutant = suite_mutants.MUTANTS[name]
    done, report = run_suite(f"suite_mutants:{name}", tmp_path, "-k", mutant.subset,
                             options=("--seed", "1"))
    assert done.returncode == 1 and report["failures"], done.stdout[-3000:]
    assert failed_clauses(report) == {mutant.clause}
    for failure in report["failures"]:
        assert failure["message"].startswith(mutant.clause), failure["message"][:300]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(suite_mutants.MUTANTS))
def test_whole_suite_fails_and_charges_the_fault(tmp_path, name):
    """On the whole suite every mutant fails and its clause is among those charged."""
    mutant = suite_mutants.MUTANTS[name]
    done, report = run_suite(f"suite_mutants:{name}", tmp_path, options=("--seed", "1"))
    assert done.returncode == 1 and report["failures"], done.stdout[-3000:]
    assert mutant.clause in failed_clauses(report), failed_clauses(report)
