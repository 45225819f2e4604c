"""The conformance report: per-clause results, worst errors, failures with repros.

``build_report`` turns the per-test results the plugin collected into one
JSON-ready dict (format ``adaperceiver-conformance-report`` version 2);
``summary_lines`` renders it for the terminal. Both are pure functions.

Report keys: ``implementation`` (impl spec, capabilities, versions),
``environment`` (Python, NumPy, suite versions), ``profile`` (Hypothesis: ci or
thorough), ``precision`` (the precision profile whose tolerances applied, ``source``
"chosen" with ``--profile`` or "declared" by the port's dtype, its rtol), ``seed`` (of the
random test order; ``--seed`` repeats it), ``totals``, ``clauses`` (id ->
counts and failing tests: a failed test counts as failed only for the clauses
its failed checks name, see ``Result.failed_clauses``), ``clause_coverage``
(every clause of spec/CLAUSES.md: exercised, or not and why; ``conformance.clauses``),
``worst_errors``
(``accuracy``: port vs oracle or goldens, ``invariant``: port vs port; each
quantity -> largest relative error and its test), ``failures`` (id, the
failed clauses, the test's clauses, message, how the clause was attributed,
repro, for a state leak ``repro_python``: the same as a runnable program, first
divergent stage), ``exclusions`` (reason -> test ids),
``warnings`` and ``tests`` (every test with its outcome and achieved errors).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clauses import coverage
from .snippet import python_snippet

FORMAT = "adaperceiver-conformance-report"
FORMAT_VERSION = 2
SECTIONS = ("accuracy", "invariant")  # worst_errors: port vs oracle, port vs port
OUTCOMES = ("passed", "failed", "skipped", "excluded")


@dataclass
class Result:
    """One test's outcome. ``record`` is ``Checker.to_json()`` when the test compared tensors."""

    id: str
    outcome: str
    clauses: tuple[str, ...]
    duration_s: float = 0.0
    message: str = ""
    record: Mapping[str, Any] | None = None
    exclusion_reason: str | None = None
    failed_clauses: tuple[str, ...] = ()  # failed: the clauses at fault (plugin.failed_clauses_of)
    extra: dict[str, Any] = field(default_factory=dict)


def _json_safe(value: Any) -> Any:
    """Non-finite floats become None (strict JSON); containers are converted recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# Where Hypothesis' notes begin in an exception message (the example dump with object
# reprs stays in pytest's log, not in the report).
HYPOTHESIS_NOTES = re.compile(r"^(Falsifying example|Failing test case|Falsifying explicit|"
                              r"You can reproduce|You can add @seed|Trying example|"
                              r"Explanation:|Highest target score)", re.MULTILINE)
FLAKY_WRAPPER = re.compile(r"^(\w+)\((['\"])(.*)\2\) \[single exception in \w+\]$", re.DOTALL)


def clean_message(message: str) -> str:
    """A failure message without Hypothesis' appended notes (``Failing test case: ...`` with
    ``Checker(...)`` reprs and object addresses) nor its ``FlakyFailure`` wrapping."""
    match = HYPOTHESIS_NOTES.search(message)
    message = (message[:match.start()] if match else message).rstrip()
    wrapped = FLAKY_WRAPPER.match(message)
    if wrapped:  # AssertionError("...") [single exception in FlakyFailure]
        message = f"{wrapped.group(1)}: " + wrapped.group(3).encode().decode("unicode_escape")
    return message.removeprefix("AssertionError: ")  # the clause ids lead the first line


def failure_message(result: Result) -> str:
    """The located first failure's own message where the test kept one, else pytest's."""
    return (result.record or {}).get("message") or clean_message(result.message)


def _worst_errors(results: Iterable[Result]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per section (accuracy / invariant) and quantity, the largest relative error and its test."""
    worst: dict[str, dict[str, dict[str, Any]]] = {section: {} for section in SECTIONS}
    for result in results:
        errors = (result.record or {}).get("errors") or {}
        for section in SECTIONS:
            for quantity, err in (errors.get(section) or {}).items():
                rel = err.get("max_rel")
                if rel is None or not math.isfinite(rel):
                    rel = math.inf
                kept = worst[section].get(quantity)
                if kept is None or rel > kept["max_rel"]:
                    worst[section][quantity] = {"max_rel": rel, "max_abs": err.get("max_abs"),
                                                "rtol": err.get("rtol"), "test": result.id}
    return worst


def build_report(results: Sequence[Result], *, implementation: Mapping[str, Any],
                 environment: Mapping[str, Any], profile: str, seed: int | None = None,
                 warnings: Sequence[str] = (), duration_s: float = 0.0,
                 precision: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of one run (see the module docstring for the keys)."""
    totals = {outcome: 0 for outcome in OUTCOMES}
    clauses: dict[str, dict[str, Any]] = defaultdict(
        lambda: {**{o: 0 for o in OUTCOMES}, "failed_tests": []})
    exclusions: dict[str, list[str]] = defaultdict(list)
    for result in results:
        totals[result.outcome] += 1
        if result.outcome == "failed":  # only the clauses at fault, not all the test carries
            for clause in result.failed_clauses or result.clauses:
                clauses[clause]["failed"] += 1
                clauses[clause]["failed_tests"].append(result.id)
        else:
            for clause in result.clauses:
                clauses[clause][result.outcome] += 1
        if result.outcome == "excluded":
            exclusions[result.exclusion_reason or "?"].append(result.id)
    failures = [{"id": r.id, "clauses": list(r.failed_clauses or r.clauses),
                 "test_clauses": list(r.clauses), "message": failure_message(r),
                 "attribution": (r.record or {}).get("attribution") or "",
                 "repro": (r.record or {}).get("repro"),
                 "repro_python": python_snippet((r.record or {}).get("repro") or {},
                                                implementation.get("impl", "PKG.MODULE:FACTORY")),
                 "first_divergent_stage": (r.record or {}).get("first_divergent_stage")}
                for r in results if r.outcome == "failed"]
    tests = [{"id": r.id, "outcome": r.outcome, "clauses": list(r.clauses),
              "duration_s": round(r.duration_s, 4),
              "message": failure_message(r) if r.outcome == "failed" else r.message,
              **({"tolerance": r.record.get("tolerance"), "errors": r.record.get("errors")}
                 if r.record else {}), **r.extra}
             for r in results]
    return _json_safe({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "implementation": dict(implementation),
        "environment": dict(environment),
        "profile": profile,
        **({"precision": dict(precision)} if precision else {}),
        "seed": seed,
        "duration_s": round(duration_s, 2),
        "totals": totals,
        "clauses": {k: clauses[k] for k in sorted(clauses)},
        "clause_coverage": coverage(tests),
        "worst_errors": _worst_errors(results),
        "failures": failures,
        "exclusions": dict(exclusions),
        "warnings": list(warnings),
        "tests": tests,
    })


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """Terminal rendering: implementation, totals, clause table, worst errors, failures."""
    impl = report["implementation"]
    t = report["totals"]
    lines = [f"implementation: {impl.get('impl')} ({impl.get('name')} {impl.get('version')}, "
             f"{impl.get('dtype')}), profile {report['profile']}, order seed {report['seed']} "
             f"(repeat with --seed {report['seed']})",
             *([f"precision profile {p['profile']} ({p['source']}; rtol {_g(p['rtol'])})"]
               if (p := report.get("precision")) else []),
             f"totals: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped, "
             f"{t['excluded']} excluded in {report['duration_s']}s"]
    for override in impl.get("tolerance_overrides") or []:  # in the headline: they loosen TOL-1
        beyond = override.get("beyond_bound")
        lines.append(f"TOLERANCE OVERRIDE: {override['test_prefix']}* rtol {_g(override['rtol'])} "
                     f"({override['reason']})" + (f"; beyond the 10x bound: {beyond}"
                                                   if beyond else ""))
    lines.append("clause      pass  fail  skip  excl")
    for clause, c in report["clauses"].items():
        mark = "  FAIL" if c["failed"] else ""
        lines.append(f"{clause:<10} {c['passed']:>5} {c['failed']:>5} {c['skipped']:>5} "
                     f"{c['excluded']:>5}{mark}")
    titles = {"accuracy": "worst accuracy errors (port vs oracle/goldens; max relative error "
                          "/ tolerance, test):",
              "invariant": "worst invariant errors (port vs port; max relative error / "
                           "tolerance, test):"}
    for section in SECTIONS:
        if report["worst_errors"].get(section):
            lines.append(titles[section])
            for quantity, w in sorted(report["worst_errors"][section].items()):
                lines.append(f"  {quantity:<12} {_g(w['max_rel'], '.3g')} / "
                             f"{_g(w['rtol'], '.3g')}  {w['test']}")
    for failure in report["failures"]:
        lines.append(f"FAILED {failure['id']} [{', '.join(failure['clauses'])}]")
        first = failure["message"].splitlines()[0] if failure["message"] else ""
        lines.append(f"  {first}")
        if failure.get("attribution"):
            lines.append(f"  attributed: {failure['attribution']}")
        if failure["first_divergent_stage"]:
            stage = failure["first_divergent_stage"]
            lines.append(f"  first divergent stage: {stage['stage']} ({stage['detail']})")
        if failure["repro"]:
            lines.append(f"  repro: {json.dumps(failure['repro'])}")
        if failure.get("repro_python"):
            lines.append("  repro as Python:")
            lines += [f"    {line}" for line in failure["repro_python"].splitlines()]
    missed = {k: c for k, c in (report.get("clause_coverage") or {}).items()
              if c["status"] != "exercised"}
    if missed:
        lines.append(f"clauses not exercised ({len(missed)} of "
                     f"{len(report['clause_coverage'])}):")
        lines += [f"  {k}: {c['reason'][:150]}" for k, c in missed.items()]
    for reason, ids in report["exclusions"].items():
        lines.append(f"excluded ({len(ids)}): {reason}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines


def _g(value: float | None, spec: str = "g") -> str:
    """A number of the report; None is a non-finite value the JSON could not hold."""
    return "inf" if value is None else format(value, spec)


def write_report(path: str | Path, report: Mapping[str, Any]) -> None:
    """Write atomically (a temporary file in the same directory, then renamed): a reader,
    or a run killed mid-write, sees the previous report or the new one, never a part."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    os.replace(temporary, path)
