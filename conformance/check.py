"""Recorded comparisons: every check a test makes is kept for the report.

A ``Checker`` belongs to one test. Every check names **the one spec clause it
tests** (``check.close("logits", a, b, clause="MAT-3")``) and **what it compares
against** (``versus="oracle"``: the port vs the oracle or its goldens, an
*accuracy* check; ``versus="port"``: the port vs itself, an *invariant*). It
measures each compared tensor with the TOL-1 error
(``conformance.tolerances.errors``), keeps the worst result per (versus,
quantity), the repro of the case being checked and the first stage that
diverged, and raises one ``AssertionError`` whose first line names the clauses
of the failed checks. The report marks exactly those clauses failed, not every
clause the test carries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .tolerances import Tolerance, argmax_mismatches, errors


@dataclass(frozen=True)
class Comparison:
    """One compared tensor: achieved errors against the tolerance used."""

    quantity: str
    max_abs: float
    max_rel: float
    rtol: float
    problem: str = ""  # non-empty when the tensors could not be compared (shape, dtype)
    where: str = ""  # which part of the quantity, e.g. "row 2" or "block_1[:, :4]"
    clause: str = ""  # the spec clause this check tests (set by the Checker)
    seen_by: str = ""  # the check's own clause when the failure was charged to another one
    versus: str = "oracle"  # "oracle": accuracy check; "port": invariant (port vs port)

    @property
    def ok(self) -> bool:
        return not self.problem and self.max_rel <= self.rtol

    def describe(self) -> str:
        name = f"{self.quantity} {self.where}".strip()
        name = f"[{self.clause}] {name}" if self.clause else name
        if self.problem:
            return f"{name}: {self.problem}"
        return (f"{name}: max_rel {self.max_rel:.3g} (rtol {self.rtol:.3g}), "
                f"max_abs {self.max_abs:.3g}")


def compare(quantity: str, actual: Any, expected: np.ndarray, rtol: float) -> Comparison:
    """Compare shapes, then values with the TOL-1 relative error."""
    actual = np.asarray(actual)
    if actual.shape != np.shape(expected):
        return Comparison(quantity, float("inf"), float("inf"), rtol,
                          f"shape {actual.shape} != expected {np.shape(expected)}")
    if not (np.issubdtype(actual.dtype, np.number) or actual.dtype == np.bool_):
        return Comparison(quantity, float("inf"), float("inf"), rtol,
                          f"dtype {actual.dtype} is not numeric")
    max_abs, max_rel = errors(actual, expected)
    return Comparison(quantity, max_abs, max_rel, rtol)


def compare_exact(quantity: str, actual: Any, expected: np.ndarray) -> Comparison:
    """Integer results (exit depths) must be equal; rtol 0."""
    actual = np.asarray(actual)
    if actual.shape != np.shape(expected):
        return Comparison(quantity, float("inf"), float("inf"), 0.0,
                          f"shape {actual.shape} != expected {np.shape(expected)}")
    if not np.array_equal(actual, expected):
        return Comparison(quantity, float(np.max(np.abs(actual - expected))), float("inf"), 0.0,
                          f"{actual.tolist()} != expected {np.asarray(expected).tolist()}")
    return Comparison(quantity, 0.0, 0.0, 0.0)


VERSUS = {"oracle": "accuracy", "port": "invariant"}  # comparison kind -> report section
# Discrete results: a mismatch is a consequence when a continuous quantity diverged too.
DISCRETE = ("exit_depths", "argmax", "granularities")


@dataclass
class Checker:
    """Per-test record of comparisons, repro and stage divergence.

    ``tolerance`` is resolved by the plugin for this test id (TOL-1 default or a
    port override with its reason). Every recording method takes the keyword
    ``clause`` (required) and ``versus`` (``"oracle"`` or ``"port"``).
    """

    tolerance: Tolerance
    worst: dict[tuple[str, str], Comparison] = field(default_factory=dict)
    repro: dict[str, Any] | None = None
    divergence: dict[str, Any] | None = None
    failed: list[Comparison] = field(default_factory=list)
    attribution: str = ""  # how the failed checks' clause was established, when re-attributed
    # The first case that failed, frozen when assert_ok raises: Hypothesis goes on running
    # examples (shrinking, replaying) after a failure, and on a shared handle a replay may
    # pass (its state differs); the report keeps this located failure.
    first_failure: dict[str, Any] | None = None
    # True while first_failure is a not yet located failure of a Hypothesis example that is
    # not the final one (``handles.final_example``): the final replay replaces it.
    provisional: bool = False

    def start_case(self, repro: dict[str, Any]) -> None:
        """Begin checking one case (one Hypothesis example); keeps its repro (JSON-ready:
        call arguments encoded with ``conformance.callargs.encode``)."""
        self.repro = repro
        self.divergence = None
        self.failed = []
        self.attribution = ""

    def close(self, quantity: str, actual: Any, expected: np.ndarray, *, clause: str,
              where: str = "", versus: str = "oracle") -> Comparison:
        """Record ``actual`` vs ``expected`` within this test's tolerance.

        ``quantity`` ("logits", "features", "latents") keys the worst error kept for
        the report; ``where`` locates the compared part in a failure message.
        """
        result = compare(quantity, actual, expected, self.tolerance.rtol)
        return self._keep(replace(result, where=where), clause, versus)

    def exact(self, quantity: str, actual: Any, expected: np.ndarray, *, clause: str,
              versus: str = "oracle") -> Comparison:
        """Record an exact comparison (integers)."""
        return self._keep(compare_exact(quantity, actual, expected), clause, versus)

    def argmax(self, actual: Any, expected: np.ndarray, *, clause: str,
               versus: str = "oracle") -> Comparison:
        """Record whether the predicted classes agree (TOL-1: near ties are excused)."""
        if np.shape(actual) != np.shape(expected):
            return self._keep(compare_exact("argmax", actual, expected), clause, versus)
        bad = argmax_mismatches(actual, expected, self.tolerance.rtol)
        error = float("inf") if bad else 0.0
        return self._keep(Comparison("argmax", error, error, 0.0,
                                     f"class differs for samples {bad}" if bad else ""),
                          clause, versus)

    def raised(self, error: BaseException, *, clause: str, what: str = "call",
               versus: str = "oracle") -> Comparison:
        """Record that the port raised where it should have returned (a failed check)."""
        problem = f"the port raised {type(error).__name__}: {error}"
        return self._keep(Comparison(what, float("inf"), float("inf"), 0.0, problem),
                          clause, versus)

    def reattribute(self, clauses: str | list[str], how: str, *, only: str | None = None) -> None:
        """Move the current case's failed checks to ``clauses`` (one copy per clause), e.g.
        to STATE-1 once a state leak is shown to cause them; ``only`` limits the move to
        checks currently on that clause. ``how`` says why, in the report."""
        clauses = [clauses] if isinstance(clauses, str) else list(clauses)
        moved = []
        for c in self.failed:
            if only is None or c.clause == only:
                moved += [replace(c, clause=clause, seen_by=c.seen_by or c.clause)
                          for clause in clauses]
            else:
                moved.append(c)
        self.failed = moved
        self.attribution = how

    def charge_discrete(self) -> None:
        """A discrete mismatch (exit depths, argmax, granularities) next to a diverged
        continuous quantity (logits, features, a stage) is its consequence: charge it to the
        clause of the first such quantity (the earliest located divergence)."""
        cause = next((c for c in self.failed if c.quantity not in DISCRETE
                      and not c.problem.startswith("the port raised")), None)
        if cause is None or all(c.clause == cause.clause for c in self.failed
                                if c.quantity in DISCRETE):
            return
        self.failed = [replace(c, clause=cause.clause, seen_by=c.seen_by or c.clause)
                       if c.quantity in DISCRETE else c for c in self.failed]
        note = f"{'/'.join(sorted({c.quantity for c in self.failed if c.quantity in DISCRETE}))} " \
               f"mismatch charged to the diverged {cause.quantity}"
        self.attribution = f"{self.attribution}; {note}" if self.attribution else note

    def headline(self, what: str) -> str:
        """First line of a failure: the clauses at fault, the checks that saw them when
        they differ (``"STATE-1 (seen by the MAT-1 check): ..."``), what was compared and
        why the failure is charged there."""
        clauses = self.failed_clauses()
        seen = [c for c in dict.fromkeys(f.seen_by for f in self.failed if f.seen_by)
                if c not in clauses]
        checks = "checks" if len(seen) > 1 else "check"
        head = ", ".join(clauses) + (f" (seen by the {', '.join(seen)} {checks})" if seen else "")
        reason = f": {self.attribution}" if self.attribution else ""
        return f"{head}: {what} out of tolerance ({self.tolerance.source}){reason}"

    def _keep(self, result: Comparison, clause: str, versus: str) -> Comparison:
        if versus not in VERSUS:
            raise ValueError(f"versus must be one of {sorted(VERSUS)}, got {versus!r}")
        result = replace(result, clause=clause, versus=versus)
        key = (versus, result.quantity)
        old = self.worst.get(key)
        if old is None or (old.ok and not result.ok) or (old.ok == result.ok
                                                          and result.max_rel > old.max_rel):
            self.worst[key] = result
        if not result.ok:
            self.failed.append(result)
        return result

    def failed_clauses(self) -> list[str]:
        """Clauses of the current case's failed checks, in first-failure order."""
        return list(dict.fromkeys(c.clause for c in self.failed))

    def assert_ok(self, what: str, *, provisional: bool = False) -> None:
        """Raise ``AssertionError`` listing the failed comparisons of the current case.

        The first line is ``headline(what)``: the clauses at fault first, then the checks
        that saw the failure and the reason it is charged there; ``what`` says what was
        compared (``"port vs oracle"``). The located first failure keeps this message
        (``to_json()["message"]``) for the report, free of Hypothesis' example dump; a
        ``provisional`` (unlocated) one is replaced by the next failure that is not.
        """
        if not self.failed:
            return
        self.charge_discrete()
        lines = [self.headline(what)]
        lines += [f"  {c.describe()}" for c in self.failed]
        if self.divergence:
            lines.append(f"  first divergent stage: {self.divergence['stage']} "
                         f"({self.divergence['detail']})")
        if self.repro:
            lines.append(f"  repro: {self.repro}")
        message = "\n".join(lines)
        if self.first_failure is None or (self.provisional and not provisional):
            self.first_failure = {**self._case_json(), "message": message}
            self.provisional = provisional
        raise AssertionError(message)

    def _case_json(self) -> dict[str, Any]:
        return {"repro": self.repro, "first_divergent_stage": self.divergence,
                "failed_checks": [asdict(c) for c in self.failed],
                "attribution": self.attribution}

    def to_json(self) -> dict[str, Any]:
        errors: dict[str, dict[str, Any]] = {section: {} for section in VERSUS.values()}
        for (versus, quantity), comparison in self.worst.items():
            errors[VERSUS[versus]][quantity] = asdict(comparison)
        return {"tolerance": asdict(self.tolerance), "errors": errors,
                **(self.first_failure or self._case_json())}
