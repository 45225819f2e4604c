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
prints / writes the report. The port runs in a worker process with a time limit
on every call (``conformance.isolation``; ``--conformance-isolation none`` keeps it
in pytest's process); a port that times out or crashes fails the running test
(with its repro) and the run goes on. The report is rewritten as each test ends
(``"complete": false`` until the session finishes), so a crash of the run itself
keeps every result before it. Under pytest-xdist (``-n N``, ``--jobs N``) each
xdist worker has its own port worker and handle pool; the controller collects
the workers' results into one report, in the same (seeded) order as a serial run.
``python -m conformance`` runs pytest on the
suite's test modules (``conformance/tests``) with these options, so the
command and a plain pytest run share one code path::

    pytest --pyargs conformance.tests --conformance-impl mypkg.adapter:factory

(add ``-p conformance.plugin`` when the package is not pip-installed, so the
entry point is not registered).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import PROFILES, SUITE_DIR
from .check import Checker
from .exclusions import Exclusions, load_exclusions
from .handles import HandlePool
from .isolation import DEFAULT_CALL_TIMEOUT, IsolatedPort, PortIncident
from .profiles import PROFILES as PRECISION_PROFILES
from .profiles import profile as precision_profile
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
    role: str = "serial"  # "serial", "controller" (xdist) or "worker" (xdist)
    run: dict[str, Any] = field(default_factory=dict)  # isolation, call timeout, jobs, run id
    runner_report: Path | None = None  # where the report goes for `python -m conformance`
    precision: str | None = None  # the precision profile chosen with --profile (None: declared)
    order: dict[str, int] = field(default_factory=dict)  # test id -> collection index

    @property
    def precision_profile(self) -> str:
        """The precision profile whose tolerances apply: chosen, else the declared dtype."""
        return self.precision or self.adapter.capabilities.dtype

    def precision_json(self) -> dict[str, Any]:
        """The report's ``precision``: the profile used, whether it was chosen (--profile) or
        declared (Capabilities.dtype), the port's declared dtype, the rtol and its basis."""
        used = precision_profile(self.precision_profile)
        return {"profile": used.name, "source": "chosen" if self.precision else "declared",
                "declared": self.adapter.capabilities.dtype, "rtol": used.rtol,
                "measured": used.measured}

    @property
    def journal(self) -> Path | None:
        """Where the report is (re)written: the user's --report, else the runner's."""
        return self.report_path or self.runner_report


STATE = pytest.StashKey[SuiteState]()
CHECKER = pytest.StashKey[Checker]()
EXCLUDED = pytest.StashKey[str]()
# The attribute of a teardown TestReport carrying the test's Result (as a dict): set where
# the test ran, read where the report is built (the same process, or the xdist controller).
RESULT_ATTRIBUTE = "conformance_result"
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
    group.addoption("--conformance-precision", default=None, choices=list(PRECISION_PROFILES),
                    help="precision profile whose TOL-1 tolerances apply (default: the dtype "
                         "the port declares in its Capabilities)")
    group.addoption("--conformance-published", default=None, metavar="DIR",
                    help="directory of published-checkpoint goldens "
                         "(default conformance/goldens/published)")
    group.addoption("--conformance-seed", default=None, type=int, metavar="N",
                    help="seed of the random order of goldens and invariants "
                         "(default: a fresh one, printed in the report)")
    group.addoption("--conformance-call-timeout", default=DEFAULT_CALL_TIMEOUT, type=float,
                    metavar="SECONDS",
                    help="time limit of every adapter call, the factory included "
                         f"(default {DEFAULT_CALL_TIMEOUT:g}); needs isolation 'process'")
    group.addoption("--conformance-isolation", default="process", choices=("process", "none"),
                    help="process (default): the port runs in a worker process that is "
                         "killed and restarted on a timeout or crash; none: in pytest's "
                         "process (for a debugger; no time limit)")
    group.addoption("--conformance-runner-report", default=None, help=argparse.SUPPRESS)
    group.addoption("--conformance-run-id", default=None, help=argparse.SUPPRESS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clauses(*ids): spec clause ids (spec/CLAUSES.md) "
                                       "a conformance test checks")
    config.addinivalue_line("markers", "checkpoint: needs published checkpoint weights on "
                                       "disk; skipped without them")
    impl = config.getoption("conformance_impl")
    if not impl:
        return
    role = ("worker" if hasattr(config, "workerinput") else
            "controller" if getattr(config.option, "dist", "no") != "no" else "serial")
    isolation = config.getoption("conformance_isolation")
    timeout = config.getoption("conformance_call_timeout")
    try:
        if not timeout > 0:
            raise ValueError(f"--call-timeout must be a number of seconds > 0, got {timeout:g}")
        adapter = (IsolatedPort(impl, timeout) if isolation == "process"
                   else load_adapter(impl))
        path = config.getoption("conformance_exclusions")
        exclusions = load_exclusions(path) if path else Exclusions(())
        published = _existing_dir(config.getoption("conformance_published"),
                                  "--published-goldens")
        report = _writable_file(config.getoption("conformance_report"), "--report")
        runner_report = _writable_file(config.getoption("conformance_runner_report"),
                                       "--conformance-runner-report")
    except (ValueError, OSError) as error:
        raise pytest.UsageError(f"conformance: {error}") from error
    if role == "controller" and isinstance(adapter, IsolatedPort):
        adapter.close()  # built to check --impl and read the capabilities; xdist workers run it
    profile = config.getoption("conformance_profile")
    seed = (config.workerinput["conformance_seed"] if role == "worker"
            else config.getoption("conformance_seed"))
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    state = SuiteState(impl, adapter, profile, exclusions, published, report, seed,
                       HandlePool(adapter), _load_hypothesis_profile(profile), role=role,
                       runner_report=runner_report,
                       precision=config.getoption("conformance_precision"))
    state.run = {"isolation": isolation, "call_timeout_s": timeout if isolation == "process"
                 else None, "jobs": _jobs(config), "run_id": config.getoption(
                     "conformance_run_id")}
    config.stash[STATE] = state
    session = _Session(state)
    config.pluginmanager.register(session, "adaperceiver-conformance-run")
    if isinstance(adapter, IsolatedPort):
        adapter.on_incident = session.incident
    if role == "controller":
        config.pluginmanager.register(_Controller(state), "adaperceiver-conformance-xdist")


def _jobs(config: pytest.Config) -> int:
    """Number of xdist workers (1 without xdist)."""
    if getattr(config.option, "dist", "no") == "no":
        return 1
    return int(getattr(config.option, "numprocesses", None) or 1)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and isinstance(state.adapter, IsolatedPort):
        state.adapter.close()
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


def suite_id_of(config: pytest.Config, nodeid: str) -> str | None:
    """``suite_id`` from a node id alone (the xdist controller has ids, not items)."""
    path, sep, rest = nodeid.partition("::")
    try:
        relative = (config.rootpath / path).resolve().relative_to(SUITE_DIR.resolve())
    except ValueError:
        return None
    return f"{relative.as_posix()}::{rest}" if sep else None


def tolerance_for(state: SuiteState, test_id: str) -> Tolerance:
    """The port's override for this test id (TOL-1 allows them with a reason), else the table."""
    for override in state.adapter.capabilities.tolerance_overrides:
        if test_id.startswith(override.test_prefix):
            return Tolerance(override.rtol, f"port override: {override.reason}")
    return default_tolerance(state.precision_profile)


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


def _check_overrides_match(state: SuiteState, ids: list[str]) -> None:
    """An override matching no test is a usage error (exit 4): it names the tests it loosens.
    Checked where the ids are known first: a serial run, or the xdist controller (where a
    ``UsageError`` would be an internal error, so ``pytest.exit`` ends its loop instead)."""
    for override in state.adapter.capabilities.tolerance_overrides:
        if not any(test_id.startswith(override.test_prefix) for test_id in ids):
            message = (f"conformance: ToleranceOverride test_prefix {override.test_prefix!r} "
                       "matches no test of the suite (an override names the tests it loosens)")
            if state.role == "controller":
                pytest.exit(f"ERROR: {message}", returncode=pytest.ExitCode.USAGE_ERROR)
            if state.role == "serial":
                raise pytest.UsageError(message)


def _unmatched_exclusions(state: SuiteState, ids: list[str]) -> list[str]:
    return [f"exclusion prefix {prefix!r} ({state.exclusions.source}) matches no test"
            for prefix in state.exclusions.unmatched(ids)]


class _Session:
    """Hooks active only during a conformance run.

    Where tests run (serial run, xdist worker): exclusions, override scoping and the
    seeded order at collection; around each test the isolated port's incident window;
    at teardown the test's ``Result``, attached to the teardown report. Where the report
    is built (serial run, xdist controller): every teardown report's ``Result``, the
    report rewritten after each, completed at the end of the session.
    """

    def __init__(self, state: SuiteState) -> None:
        self.state = state
        self.phases: dict[str, list[pytest.TestReport]] = {}
        self.item: pytest.Item | None = None
        self.incidents: dict[str, dict[str, Any]] = {}  # nodeid -> first incident of the test

    # -- collection (where tests run) ------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before -k / -m deselect: overrides see every test
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
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
        self.collected(ids)
        _shuffle_shared(items, self.state.seed)
        self.state.order = {test_id: i for i, test_id in
                            enumerate(t for t in map(suite_id, items) if t is not None)}

    def collected(self, ids: list[str]) -> None:
        """Warnings for exclusion prefixes matching no test; a usage error for such an
        override (an override is scoped to the tests it names)."""
        self.state.warnings += _unmatched_exclusions(self.state, ids)
        _check_overrides_match(self.state, ids)

    # -- running (where tests run) ---------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item):
        self.item = item
        if isinstance(self.state.adapter, IsolatedPort):
            self.state.adapter.begin_test()
        try:
            return (yield)
        finally:
            self.item = None

    def incident(self, error: PortIncident) -> None:
        """``IsolatedPort.on_incident``: keep the running test's first incident and the repro
        of the case it was checking at that moment (Hypothesis may run other cases after)."""
        if self.item is None or self.item.nodeid in self.incidents:
            return
        checker = self.item.stash.get(CHECKER, None)
        self.incidents[self.item.nodeid] = {
            "kind": error.kind, "message": f"{type(error).__name__}: {error}".splitlines()[0],
            "repro": json.loads(json.dumps(checker.repro)) if checker and checker.repro
            else None, "applied": False}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        test_id = suite_id(item)
        if test_id is None:
            return report
        incident = self.incidents.get(item.nodeid)
        if incident and not incident["applied"] and not report.skipped:
            incident["applied"] = True
            if report.passed:  # e.g. an error test accepting any exception: a hang is no error
                report.outcome, report.longrepr = "failed", incident["message"]
        self.phases.setdefault(test_id, []).append(report)
        if report.when == "teardown":
            if isinstance(self.state.adapter, IsolatedPort):
                self.state.adapter.end_test()
            result = self._result(item, test_id, self.incidents.pop(item.nodeid, None))
            # plain JSON types: xdist (execnet) sends reports to its controller and cannot
            # serialise NumPy scalars
            data = {**asdict(result), "order": self.state.order.get(test_id)}
            setattr(report, RESULT_ATTRIBUTE, json.loads(json.dumps(data, default=_plain)))
        return report

    def _result(self, item: pytest.Item, test_id: str,
                incident: dict[str, Any] | None) -> Result:
        phases = self.phases.pop(test_id)
        failed = [r for r in phases if r.failed]
        skipped = [r for r in phases if r.skipped]
        checker = item.stash.get(CHECKER, None)
        record = checker.to_json() if checker else None
        extra: dict[str, Any] = {}
        if failed:
            outcome, message = "failed", str(failed[0].longrepr.reprcrash.message
                                             if hasattr(failed[0].longrepr, "reprcrash")
                                             else failed[0].longrepr)
            if incident is not None:  # the port timed out or crashed: that is the failure
                message = incident["message"]
                record = {**(record or {}), "message": message,  # not a check's located message
                          "repro": incident["repro"] or (record or {}).get("repro")}
                extra["incident"] = {"kind": incident["kind"], "message": incident["message"]}
            failed_clauses = failed_clauses_of(record or {}, message, clauses_of(item))
        elif skipped:
            outcome = "excluded" if EXCLUDED in item.stash else "skipped"
            longrepr = skipped[0].longrepr
            message = longrepr[2].removeprefix("Skipped: ") if isinstance(longrepr, tuple) else ""
        else:
            outcome, message = "passed", ""
        return Result(id=test_id, outcome=outcome, clauses=clauses_of(item),
                      duration_s=sum(r.duration for r in phases), message=message,
                      record=record, exclusion_reason=item.stash.get(EXCLUDED, None),
                      failed_clauses=failed_clauses if failed else (), extra=extra)

    # -- the report (serial run, xdist controller) ----------------------------------
    def pytest_sessionstart(self) -> None:
        if self.state.role != "worker":
            self.write(complete=False)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.state.role == "worker":
            return
        data = getattr(report, RESULT_ATTRIBUTE, None)
        if data is None:
            return
        data = dict(data)
        order = data.pop("order")
        result = Result(**{**data, "clauses": tuple(data["clauses"]),
                           "failed_clauses": tuple(data["failed_clauses"])})
        if order is not None:
            self.state.order.setdefault(result.id, order)
        self.state.results.append(result)
        self.write(complete=False)

    def write(self, *, complete: bool, exit_status: int | None = None) -> None:
        """Build the report from the results so far; rewrite it where asked."""
        state = self.state
        caps = state.adapter.capabilities
        results = sorted(state.results, key=lambda r: state.order.get(r.id, len(state.order)))
        report = build_report(
            results, implementation={"impl": state.impl, **caps.to_json()},
            environment=_environment(), profile=state.profile, seed=state.seed,
            precision=state.precision_json(),
            warnings=state.warnings, duration_s=time.perf_counter() - state.started)
        state.report = {"format": report["format"], "format_version": report["format_version"],
                        "complete": complete, "exit_status": exit_status, "run": state.run,
                        **report}
        if state.journal is not None:
            write_report(state.journal, state.report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        if isinstance(self.state.adapter, IsolatedPort):
            self.state.adapter.close()
        if self.state.role != "worker":
            self.write(complete=True, exit_status=int(exitstatus))

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int) -> None:
        if (self.state.report is None or self.state.role == "worker"
                or exitstatus == pytest.ExitCode.USAGE_ERROR):
            return
        terminalreporter.section("AdaPerceiver conformance")
        for line in summary_lines(self.state.report):
            terminalreporter.write_line(line)
        if self.state.report_path is not None:
            terminalreporter.write_line(f"report written to {self.state.report_path}")


class _Controller:
    """xdist controller hooks (registered only there): the seed for the workers, and the
    collected test ids (the controller collects nothing itself)."""

    def __init__(self, state: SuiteState) -> None:
        self.state = state
        self.seen = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput["conformance_seed"] = self.state.seed

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        if self.seen:  # every worker collects the same ids in the same order
            return
        self.seen = True
        test_ids = [t for t in (suite_id_of(node.config, i) for i in ids) if t is not None]
        self.state.order = {test_id: i for i, test_id in enumerate(test_ids)}
        self.state.warnings += _unmatched_exclusions(self.state, test_ids)
        _check_overrides_match(self.state, test_ids)


def _plain(value: Any) -> Any:
    """``json.dumps`` default: NumPy scalars and arrays as Python numbers and lists."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _environment() -> dict[str, str]:
    import hypothesis
    import numpy

    from . import __version__

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "numpy": numpy.__version__, "pytest": pytest.__version__,
            "hypothesis": hypothesis.__version__, "conformance": __version__}
