"""pytest plugin of the conformance suite (entry point ``adaperceiver_conformance``).

Inert unless ``--conformance-impl package.module:factory`` is given: it then
builds the port's adapter, checks every option up front (a bad factory,
capabilities, exclusion file, report path or goldens directory is one
``ERROR: conformance: ...`` line and pytest's usage-error exit status 4),
applies the exclusion file, loads the Hypothesis profile (no example database,
its storage directory in a temporary folder: the porter's working directory is
left untouched), shuffles the goldens and invariants into one seeded random
order (``--conformance-seed``; they share one handle per checkpoint, so a
stateful port fails wherever its state leaks), records every suite test's
outcome, the clauses its failed checks name and its achieved errors, and
prints / writes the report. ``python -m conformance`` runs pytest on the
suite's test modules (``conformance/tests``) with these options, so the
command and a plain pytest run share one code path::

    pytest --pyargs conformance.tests --conformance-impl mypkg.adapter:factory

(add ``-p conformance.plugin`` when the package is not pip-installed, so the
entry point is not registered).
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import PROFILES, SUITE_DIR
from .check import Checker
from .exclusions import Exclusions, load_exclusions
from .handles import HandlePool
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
    seed: int = 0
    handles: HandlePool | None = None
    hypothesis_home: str | None = None
    results: list[Result] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)


STATE = pytest.StashKey[SuiteState]()
CHECKER = pytest.StashKey[Checker]()
EXCLUDED = pytest.StashKey[str]()
# Suite modules whose tests share handles and run in one seeded random order.
SHUFFLED_MODULES = ("test_goldens.py", "test_invariants.py")
# Leading clause ids of an assertion message ("OUT-1: ..." or "ARG-2, ARG-8: ...").
LEADING_CLAUSES = re.compile(r"^(?:AssertionError: )?((?:[A-Z]+-\d+)(?:, [A-Z]+-\d+)*):")


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
    group.addoption("--conformance-seed", default=None, type=int, metavar="N",
                    help="seed of the random order of goldens and invariants "
                         "(default: a fresh one, printed in the report)")


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
        published = _existing_dir(config.getoption("conformance_published"),
                                  "--published-goldens")
        report = _writable_file(config.getoption("conformance_report"), "--report")
    except (ValueError, OSError) as error:
        raise pytest.UsageError(f"conformance: {error}") from error
    profile = config.getoption("conformance_profile")
    seed = config.getoption("conformance_seed")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    state = SuiteState(impl, adapter, profile, exclusions, published, report, seed,
                       HandlePool(adapter), _load_hypothesis_profile(profile))
    config.stash[STATE] = state
    config.pluginmanager.register(_Session(state), "adaperceiver-conformance-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.hypothesis_home:
        shutil.rmtree(state.hypothesis_home, ignore_errors=True)


def _existing_dir(value: str | None, option: str) -> Path | None:
    if value is None:
        return None
    if not Path(value).is_dir():
        raise ValueError(f"{option} {value}: no such directory")
    return Path(value)


def _writable_file(value: str | None, option: str) -> Path | None:
    """Checked before the run so that an unwritable report path does not waste it."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"{option} {value}: is a directory, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{option} {value}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{option} {value}: not writable")
    return path


def _load_hypothesis_profile(profile: str) -> str:
    """Load the profile; returns the temporary Hypothesis home directory (removed at the end).

    ``database=None`` stops the example database; Hypothesis may still create its
    storage directory (``.hypothesis/`` in the working directory by default), so its
    home is moved to a temporary folder.
    """
    from hypothesis import HealthCheck, settings
    from hypothesis.configuration import set_hypothesis_home_dir

    home = tempfile.mkdtemp(prefix="adaperceiver-conformance-hypothesis-")
    set_hypothesis_home_dir(home)
    settings.register_profile(
        f"adaperceiver-conformance-{profile}", max_examples=PROFILES[profile], deadline=None,
        derandomize=profile == "ci", database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture])
    settings.load_profile(f"adaperceiver-conformance-{profile}")
    return home


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


def failed_clauses_of(record: dict[str, Any], message: str,
                      test_clauses: tuple[str, ...]) -> tuple[str, ...]:
    """The clauses a failed test is counted against: those its failed checks name; else the
    clause ids leading its assertion message; else (unattributed) every clause it carries."""
    named = [check["clause"] for check in record.get("failed_checks") or []]
    if not named:
        match = LEADING_CLAUSES.match(message)
        named = match.group(1).split(", ") if match else list(test_clauses)
    return tuple(dict.fromkeys(named))


def _shuffle_shared(items: list[pytest.Item], seed: int) -> None:
    """Shuffle the goldens and invariants among the slots they occupy (seeded, in place)."""
    slots = [i for i, item in enumerate(items)
             if (suite_id(item) or "").split("::")[0] in SHUFFLED_MODULES]
    chosen = [items[i] for i in slots]
    random.Random(seed).shuffle(chosen)
    for slot, item in zip(slots, chosen, strict=True):
        items[slot] = item


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
        _shuffle_shared(items, self.state.seed)

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
            record = checker.to_json() if checker else {}
            failed_clauses = failed_clauses_of(record, message, clauses_of(item))
        elif skipped:
            outcome = "excluded" if EXCLUDED in item.stash else "skipped"
            longrepr = skipped[0].longrepr
            message = longrepr[2].removeprefix("Skipped: ") if isinstance(longrepr, tuple) else ""
        else:
            outcome, message = "passed", ""
        return Result(id=test_id, outcome=outcome, clauses=clauses_of(item),
                      duration_s=sum(r.duration for r in phases), message=message,
                      record=checker.to_json() if checker else None,
                      exclusion_reason=item.stash.get(EXCLUDED, None),
                      failed_clauses=failed_clauses if failed else ())

    def pytest_sessionfinish(self) -> None:
        state = self.state
        caps = state.adapter.capabilities
        state.report = build_report(
            state.results,
            implementation={"impl": state.impl, **caps.to_json()},
            environment=_environment(),
            profile=state.profile, seed=state.seed, warnings=state.warnings,
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
