"""Recorded comparisons: every check a test makes is kept for the report.

A ``Checker`` belongs to one test. It measures each compared tensor with the
TOL-1 error (``conformance.tolerances.errors``), keeps the worst result per
quantity, the repro of the case being checked and the first stage that
diverged, and raises one ``AssertionError`` that names the spec clauses when
something is out of tolerance.
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

    @property
    def ok(self) -> bool:
        return not self.problem and self.max_rel <= self.rtol

    def describe(self) -> str:
        name = f"{self.quantity} {self.where}".strip()
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


@dataclass
class Checker:
    """Per-test record of comparisons, repro and stage divergence.

    ``tolerance`` is resolved by the plugin for this test id (TOL-1 default or a
    port override with its reason).
    """

    tolerance: Tolerance
    worst: dict[str, Comparison] = field(default_factory=dict)
    repro: dict[str, Any] | None = None
    divergence: dict[str, Any] | None = None
    failed: list[Comparison] = field(default_factory=list)

    def start_case(self, repro: dict[str, Any]) -> None:
        """Begin checking one case (one Hypothesis example); keeps its repro."""
        self.repro = repro
        self.divergence = None
        self.failed = []

    def close(self, quantity: str, actual: Any, expected: np.ndarray, *,
              where: str = "") -> Comparison:
        """Record ``actual`` vs ``expected`` within this test's tolerance.

        ``quantity`` ("logits", "features", "latents") keys the worst error kept for
        the report; ``where`` locates the compared part in a failure message.
        """
        result = compare(quantity, actual, expected, self.tolerance.rtol)
        return self._keep(replace(result, where=where))

    def exact(self, quantity: str, actual: Any, expected: np.ndarray) -> Comparison:
        """Record an exact comparison (integers)."""
        return self._keep(compare_exact(quantity, actual, expected))

    def argmax(self, actual: Any, expected: np.ndarray) -> Comparison:
        """Record whether the predicted classes agree (TOL-1: near ties are excused)."""
        if np.shape(actual) != np.shape(expected):
            return self._keep(compare_exact("argmax", actual, expected))  # shape problem
        bad = argmax_mismatches(actual, expected, self.tolerance.rtol)
        error = float("inf") if bad else 0.0
        return self._keep(Comparison("argmax", error, error, 0.0,
                                     f"class differs for samples {bad}" if bad else ""))

    def _keep(self, result: Comparison) -> Comparison:
        old = self.worst.get(result.quantity)
        if old is None or (old.ok and not result.ok) or (old.ok == result.ok
                                                          and result.max_rel > old.max_rel):
            self.worst[result.quantity] = result
        if not result.ok:
            self.failed.append(result)
        return result

    def assert_ok(self, clauses: str, what: str) -> None:
        """Raise ``AssertionError`` listing the failed comparisons of the current case.

        ``clauses`` names the spec clauses at stake (e.g. ``"MASK-3, MAT-1"``),
        ``what`` says what was compared (``"port vs oracle"``).
        """
        if not self.failed:
            return
        lines = [f"{clauses}: {what} out of tolerance ({self.tolerance.source})"]
        lines += [f"  {c.describe()}" for c in self.failed]
        if self.divergence:
            lines.append(f"  first divergent stage: {self.divergence['stage']} "
                         f"({self.divergence['detail']})")
        if self.repro:
            lines.append(f"  repro: {self.repro}")
        raise AssertionError("\n".join(lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "tolerance": asdict(self.tolerance),
            "errors": {q: asdict(c) for q, c in self.worst.items()},
            "repro": self.repro,
            "first_divergent_stage": self.divergence,
        }
