"""pytest plugin of the conformance suite (entry point ``adaperceiver_conformance``).

Inert unless ``--conformance-impl package.module:factory`` is given: it then
builds the port's adapter, applies the exclusion file, loads the Hypothesis
profile, records every suite test's outcome, clauses and achieved errors, and
prints / writes the report. ``python -m conformance`` runs pytest on the
suite's test modules (``conformance/tests``) with these options, so the
command and a plain pytest run share one code path::

    pytest --pyargs conformance.tests --conformance-impl mypkg.adapter:factory

(add ``-p conformance.plugin`` when the package is not pip-installed, so the
entry point is not registered).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import PROFILES, SUITE_DIR
from .check import Checker
from .exclusions import Exclusions, load_exclusions
from .protocol import PortAdapter, load_adapter
from .report import Result, build_report, summary_lines, write_report
from .tolerances import Tolerance, default_tolerance


@dataclass
class SuiteState:
    """Everything the suite's fixtures need from the command line."""

    impl: str
    adapter: PortAdapter
    profile: str
    exclusions: Exclusions
    published_dir: Path | None
    report_path: Path | None
    results: list[Result] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)


STATE = pytest.StashKey[SuiteState]()
CHECKER = pytest.StashKey[Checker]()
EXCLUDED = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("adaperceiver-conformance", "AdaPerceiver conformance suite")
    group.addoption("--conformance-impl", default=None, metavar="PKG.MODULE:FACTORY",
                    help="adapter factory of the port to check (activates the suite)")
    group.addoption("--conformance-exclusions", default=None, metavar="FILE",
                    help="TOML/JSON file of excluded test-id prefixes grouped by reason")
    group.addoption("--conformance-report", default=None, metavar="FILE",
                    help="write the JSON report here")
    group.addoption("--conformance-profile", default="ci", choices=sorted(PROFILES),
                    help="ci: small and deterministic; thorough: many Hypothesis examples")
    group.addoption("--conformance-published", default=None, metavar="DIR",
                    help="directory of published-checkpoint goldens "
                         "(default conformance/goldens/published)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clauses(*ids): spec clause ids (spec/CLAUSES.md) "
                                       "a conformance test checks")
    config.addinivalue_line("markers", "checkpoint: needs published checkpoint weights on "
                                       "disk; skipped without them")
    impl = config.getoption("conformance_impl")
    if not impl:
        return
    try:
        adapter = load_adapter(impl)
        path = config.getoption("conformance_exclusions")
        exclusions = load_exclusions(path) if path else Exclusions(())
    except (ImportError, ValueError, OSError) as error:
        raise pytest.UsageError(f"conformance: {error}") from error
    published = config.getoption("conformance_published")
    report = config.getoption("conformance_report")
    profile = config.getoption("conformance_profile")
    _load_hypothesis_profile(profile)
    config.stash[STATE] = SuiteState(impl, adapter, profile, exclusions,
                                     Path(published) if published else None,
                                     Path(report) if report else None)
    config.pluginmanager.register(_Session(config.stash[STATE]), "adaperceiver-conformance-run")


def _load_hypothesis_profile(profile: str) -> None:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        f"adaperceiver-conformance-{profile}", max_examples=PROFILES[profile], deadline=None,
        derandomize=profile == "ci", database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture])
    settings.load_profile(f"adaperceiver-conformance-{profile}")


def suite_state(config: pytest.Config) -> SuiteState:
    """The active run's state; skips the calling test when no port was given."""
    state = config.stash.get(STATE, None)
    if state is None:
        pytest.skip("the conformance suite needs --conformance-impl PKG.MODULE:FACTORY")
    return state


def suite_id(item: pytest.Item) -> str | None:
    """``<module path relative to conformance/tests>::<name>[params]``, None outside the suite."""
    try:
        relative = item.path.relative_to(SUITE_DIR).as_posix()
    except ValueError:
        return None
    return f"{relative}::{item.nodeid.split('::', 1)[1]}"


def tolerance_for(state: SuiteState, test_id: str) -> Tolerance:
    """The port's override for this test id (TOL-1 allows them with a reason), else the table."""
    for override in state.adapter.capabilities.tolerance_overrides:
        if test_id.startswith(override.test_prefix):
            return Tolerance(override.rtol, f"port override: {override.reason}")
    return default_tolerance(state.adapter.capabilities.dtype)


def clauses_of(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for mark in item.iter_markers("clauses"):
        ids += [a for a in mark.args if a not in ids]
    return tuple(sorted(ids))


class _Session:
    """Hooks active only during a conformance run."""

    def __init__(self, state: SuiteState) -> None:
        self.state = state
        self.phases: dict[str, list[pytest.TestReport]] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        ids = []
        for item in items:
            test_id = suite_id(item)
            if test_id is None:
                continue
            ids.append(test_id)
            reason = self.state.exclusions.reason_for(test_id)
            if reason is not None:
                item.stash[EXCLUDED] = reason
                item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))
        self.state.warnings += [
            f"exclusion prefix {prefix!r} ({self.state.exclusions.source}) matches no test"
            for prefix in self.state.exclusions.unmatched(ids)]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        test_id = suite_id(item)
        if test_id is not None:
            self.phases.setdefault(test_id, []).append(report)
            if report.when == "teardown":
                self.state.results.append(self._result(item, test_id))
        return report

    def _result(self, item: pytest.Item, test_id: str) -> Result:
        phases = self.phases.pop(test_id)
        failed = [r for r in phases if r.failed]
        skipped = [r for r in phases if r.skipped]
        checker = item.stash.get(CHECKER, None)
        if failed:
            outcome, message = "failed", str(failed[0].longrepr.reprcrash.message
                                             if hasattr(failed[0].longrepr, "reprcrash")
                                             else failed[0].longrepr)
        elif skipped:
            outcome = "excluded" if EXCLUDED in item.stash else "skipped"
            longrepr = skipped[0].longrepr
            message = longrepr[2].removeprefix("Skipped: ") if isinstance(longrepr, tuple) else ""
        else:
            outcome, message = "passed", ""
        return Result(id=test_id, outcome=outcome, clauses=clauses_of(item),
                          duration_s=sum(r.duration for r in phases), message=message,
                          record=checker.to_json() if checker else None,
                          exclusion_reason=item.stash.get(EXCLUDED, None))

    def pytest_sessionfinish(self) -> None:
        state = self.state
        caps = state.adapter.capabilities
        state.report = build_report(
            state.results,
            implementation={"impl": state.impl, **caps.to_json()},
            environment=_environment(),
            profile=state.profile, warnings=state.warnings,
            duration_s=time.perf_counter() - state.started)
        if state.report_path is not None:
            write_report(state.report_path, state.report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.state.report is None:
            return
        terminalreporter.section("AdaPerceiver conformance")
        for line in summary_lines(self.state.report):
            terminalreporter.write_line(line)
        if self.state.report_path is not None:
            terminalreporter.write_line(f"report written to {self.state.report_path}")


def _environment() -> dict[str, str]:
    import hypothesis
    import numpy

    from . import __version__

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "numpy": numpy.__version__, "pytest": pytest.__version__,
            "hypothesis": hypothesis.__version__, "conformance": __version__}
