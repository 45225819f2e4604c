"""The port runs in a worker process (issue 24, issue 25 items 7 and 9): a port that exits,
crashes or hangs fails the test that met it, the run goes on and its report is complete;
a bad factory is one usage-error line; tolerance overrides are bounded and scoped; --jobs
gives the serial run's report."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from suite_helpers import ROOT, outcomes, run_command, run_suite

from conformance.goldens import GOLDENS_DIR, load_manifest
from conformance.isolation import IsolatedPort, PortCrashed, PortTimeout
from conformance.protocol import Capabilities, ToleranceOverride
from conformance.report import build_report, summary_lines
from conformance.repro_input import read_failures

GRAN = ("-k", "test_golden and cls-gran")  # 7 goldens on one shared handle, one with N = 8
GRAN_8 = "test_goldens.py::test_golden[cls-gran-8]"
IMAGES = np.zeros((1, 3, 16, 16), np.float32)


def _checkpoint() -> str:
    return str(GOLDENS_DIR / load_manifest()["checkpoints"]["cls-flex-block"]["path"])


def test_isolated_call_times_out_and_the_worker_restarts():
    """A hung call raises PortTimeout after --call-timeout; the next call runs in a new worker,
    where a handle from before the restart is loaded again."""
    port = IsolatedPort("suite_hostile:hangs_at_8", call_timeout=2)
    try:
        handle = port.load(_checkpoint())
        before = port.classify(handle, IMAGES, num_tokens=4)["logits"]
        start = time.monotonic()
        with pytest.raises(PortTimeout, match=r"classify\(images \(1, 3, 16, 16\) float32, "
                                              r"num_tokens=8\) did not return within 2 s"):
            port.classify(handle, IMAGES, num_tokens=8)
        assert time.monotonic() - start < 30
        after = port.classify(handle, IMAGES, num_tokens=4)["logits"]
        np.testing.assert_allclose(after, before, rtol=1e-12)
    finally:
        port.close()


def test_isolated_crash_is_reported_with_the_signal():
    port = IsolatedPort("suite_hostile:segfaults_at_8", call_timeout=30)
    try:
        handle = port.load(_checkpoint())
        with pytest.raises(PortCrashed, match="killed by SIGSEGV during classify"):
            port.classify(handle, IMAGES, num_tokens=8)
        assert port.classify(handle, IMAGES)["logits"].shape == (1, 1, 10)
    finally:
        port.close()


def test_port_exceptions_keep_their_type():
    """ARG-8 through the worker: the port's own exception, with its message."""
    port = IsolatedPort("conformance.adapters.oracle:factory", call_timeout=30)
    try:
        with pytest.raises(ValueError, match="num_tokens must be an int >= 1, got 0"):
            port.classify(port.load(_checkpoint()), IMAGES, num_tokens=0)
    finally:
        port.close()


@pytest.mark.parametrize(("impl", "how"), [("suite_hostile:exits_at_8", "exited with status 0"),
                                           ("suite_hostile:segfaults_at_8", "killed by SIGSEGV"),
                                           ("suite_hostile:hangs_at_8", "did not return within")])
def test_crash_or_hang_fails_that_test_only(tmp_path, impl, how):
    """The test whose call exits, segfaults or hangs fails with its golden repro; the other
    goldens on the same shared handle pass; the report is complete and repro-readable."""
    done, report = run_suite(impl, tmp_path, *GRAN, options=("--seed", "1", "--call-timeout", "3"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert report["complete"] is True and report["exit_status"] == 1
    assert {i: o for i, o in outcomes(report).items() if o != "passed"} == {GRAN_8: "failed"}
    (failure,) = report["failures"]
    assert how in failure["message"] and failure["message"].startswith("Port")
    assert failure["repro"]["golden"] == "cls-gran-8"
    entry = next(t for t in report["tests"] if t["id"] == GRAN_8)
    assert entry["incident"]["kind"] == ("timeout" if "return" in how else "crash")
    assert read_failures(tmp_path / "report.json", None)[0]["id"] == GRAN_8


def test_port_hanging_on_every_call_ends_with_a_complete_report(tmp_path):
    """After 3 tests in a row ended on a timeout the port counts as hung: every later test
    fails at once ("not run"), so the run ends in bounded time."""
    start = time.monotonic()
    done, report = run_suite("suite_hostile:hangs_always", tmp_path, "-k", "test_errors",
                             options=("--call-timeout", "1"))
    assert time.monotonic() - start < 120
    assert done.returncode == 1 and report["complete"] is True
    assert report["totals"]["passed"] == 0 and report["totals"]["failed"] >= 30
    messages = [f["message"] for f in report["failures"]]
    assert all(m.startswith("PortTimeout: ") for m in messages)
    assert sum("did not return within 1 s" in m and "not run" not in m for m in messages) == 3
    assert "not run: the port timed out in 3 tests in a row" in messages[-1]


@pytest.mark.parametrize(("impl", "selection"), [
    ("suite_hostile:hangs_7th_call", "test_invalid_argument_raises and (num_tokens or mat_dim)"),
    ("suite_hostile:hangs_in_load", "test_golden and cls-gran-1")])
def test_hang_in_a_later_call_or_in_load(tmp_path, impl, selection):
    done, report = run_suite(impl, tmp_path, "-k", selection, options=("--call-timeout", "2"))
    assert done.returncode == 1 and report["complete"] is True
    assert any("did not return within 2 s" in f["message"] for f in report["failures"])
    if "7th" in impl:  # every 7th call of each worker hangs: most tests still pass
        assert report["totals"]["passed"] > report["totals"]["failed"] > 0


@pytest.mark.parametrize(("factory", "problem"), [
    ("hangs_in_factory", "hangs_in_factory()) did not return within 2 s"),
    ("raises_base_exception", "calling raises_base_exception() raised Boom: from the factory"),
    ("constant_logits_loose_override", "test_prefix must name the tests it loosens"),
    ("override_matching_nothing", "test_prefix 'test_goldens.py::test_golden[no-such-case' "
                                  "matches no test"),
])
def test_bad_factory_is_one_usage_error_line(tmp_path, factory, problem):
    """A factory that hangs or raises a BaseException, or a loose or unscoped override:
    exit 4 and one line, no traceback (pytest's INTERNALERROR included)."""
    done, report = run_suite(f"suite_hostile:{factory}", tmp_path, *GRAN,
                             options=("--call-timeout", "2"))
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
    assert len(lines) == 1 and lines[0].startswith("ERROR: conformance: "), lines
    assert problem in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_leftover_thread_does_not_keep_the_run(tmp_path):
    """A non-daemon thread the port starts lives in its worker, which exits when closed."""
    start = time.monotonic()
    done, report = run_suite("suite_hostile:leaves_a_thread", tmp_path, *GRAN)
    assert done.returncode == 0 and report["complete"] is True
    assert time.monotonic() - start < 60


def test_exit_without_isolation_is_not_a_pass(tmp_path):
    """--isolation none: os._exit(0) in the port ends pytest's process with status 0; the
    runner sees the incomplete report, says so in one line and exits 1; the report keeps
    every result before the exit (written as each test ends)."""
    done, report = run_suite("suite_hostile:exits_at_8", tmp_path, *GRAN,
                             options=("--seed", "1", "--isolation", "none"))
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert line.startswith("ERROR: conformance: the test process exited with status 0 after ")
    assert report["complete"] is False
    ran = outcomes(report)
    assert GRAN_8 not in ran and ran and set(ran.values()) == {"passed"}


@pytest.mark.slow
def test_leftover_thread_without_isolation_is_stopped(tmp_path):
    """--isolation none: the test process outlives its complete report; the runner stops it
    after 10 s and returns the status the report recorded."""
    done, report = run_suite("suite_hostile:leaves_a_thread", tmp_path, *GRAN,
                             options=("--isolation", "none"))
    assert done.returncode == 0 and report["complete"] is True
    assert "was still running 10 s after completing the report" in done.stderr


def _comparable(report: dict) -> dict:
    """The report without what differs between runs: timings, the run id, the job count."""
    report = {k: v for k, v in report.items() if k != "duration_s"}
    report["run"] = {k: v for k, v in report["run"].items() if k not in ("run_id", "jobs")}
    report["tests"] = [{k: v for k, v in t.items() if k != "duration_s"} for t in report["tests"]]
    return report


@pytest.mark.slow
def test_jobs_report_equals_the_serial_report(tmp_path):
    """--jobs 2 (pytest-xdist, a port worker per xdist worker): the same report as a serial
    run of the same seed, test for test in the same order, but for timings."""
    selection = ("-k", "test_golden or test_invalid_argument or test_classification_matches")
    (tmp_path / "s").mkdir()
    (tmp_path / "j").mkdir()
    serial_done, serial = run_suite("conformance.adapters.oracle:factory", tmp_path / "s",
                                    *selection, options=("--seed", "5"))
    jobs_done, jobs = run_suite("conformance.adapters.oracle:factory", tmp_path / "j",
                                *selection, options=("--seed", "5", "--jobs", "2"))
    assert serial_done.returncode == jobs_done.returncode == 0, jobs_done.stdout[-3000:]
    assert jobs["run"]["jobs"] == 2 and serial["run"]["jobs"] == 1
    assert serial["totals"]["passed"] > 80
    assert _comparable(jobs) == _comparable(serial)


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"test_prefix": "", "rtol": 1e-3}, "must name the tests it loosens"),
    ({"test_prefix": "test_goldens.py", "rtol": 1e-3}, "must name the tests it loosens"),
    ({"test_prefix": "test_goldens.py::", "rtol": 1e-3}, "must name the tests it loosens"),
    ({"test_prefix": "test_goldens.py::t", "rtol": math.inf}, "finite number with 0 < rtol < 1"),
    ({"test_prefix": "test_goldens.py::t", "rtol": math.nan}, "finite number with 0 < rtol < 1"),
    ({"test_prefix": "test_goldens.py::t", "rtol": 1.0}, "finite number with 0 < rtol < 1"),
    ({"test_prefix": "test_goldens.py::t", "rtol": True}, "finite number with 0 < rtol < 1"),
])
def test_tolerance_override_is_finite_and_scoped(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        ToleranceOverride(reason="why", **kwargs)


def test_tolerance_override_beyond_ten_times_needs_a_second_reason():
    caps = Capabilities(name="p", version="1", dtype="float32")
    big = ToleranceOverride("test_goldens.py::test_golden[cls-ntk", 2e-3, "fp16 RoPE")
    with pytest.raises(ValueError, match=r"more than 10 x the float32 tolerance .*beyond_bound"):
        replace(caps, tolerance_overrides=(big,))
    assert replace(caps, tolerance_overrides=(replace(big, rtol=1e-3),))  # exactly 10x: fine
    allowed = replace(caps, tolerance_overrides=(replace(big, beyond_bound="NPU"),))
    report = build_report([], implementation={"impl": "p:f", **allowed.to_json()},
                          environment={}, profile="ci", seed=1)
    lines = summary_lines(report)
    assert lines[2] == ("TOLERANCE OVERRIDE: test_goldens.py::test_golden[cls-ntk* rtol 0.002 "
                        "(fp16 RoPE); beyond the 10x bound: NPU")


def test_summary_survives_non_finite_numbers():
    """report.py used to format rtol=None (inf in strict JSON) with :g and crash."""
    report = build_report([], implementation={"impl": "p:f", "tolerance_overrides": [
        {"test_prefix": "a.py::t", "rtol": math.inf, "reason": "r"}]}, environment={},
        profile="ci", seed=1)
    assert report["implementation"]["tolerance_overrides"][0]["rtol"] is None
    assert "TOLERANCE OVERRIDE: a.py::t* rtol inf (r)" in summary_lines(report)


def test_jobs_without_xdist_is_one_line():
    done = run_command("-c", "import sys; sys.modules['xdist'] = None; "
                             "from conformance.__main__ import main; "
                             "sys.exit(main(['--impl', 'x:y', '--jobs', '2']))")
    assert done.returncode == 4
    assert done.stderr.strip() == ("ERROR: conformance: --jobs needs pytest-xdist: pip install "
                                   "pytest-xdist (or the package's [test] extra)")


def test_call_timeout_must_be_positive():
    done = subprocess.run([sys.executable, "-m", "conformance", "--impl", "x:y",
                           "--call-timeout", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--call-timeout must be a finite number > 0" in done.stderr
