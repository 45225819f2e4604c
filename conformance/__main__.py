"""``conformance`` / ``python -m conformance``: run the conformance suite against a port.

    conformance --impl PACKAGE.MODULE:FACTORY [--exclusions FILE.toml|FILE.json]
                [--report report.json] [--profile ci|thorough]
                [--profile float64|float32|bfloat16|float16|int8] [--seed N]
                [--published-goldens DIR] [--call-timeout SECONDS] [--jobs N]
                [--isolation process|none] [-- extra pytest arguments]
    conformance export-goldens DIR [--force]

The second form writes the goldens as ``.npy`` files and a manifest for ports that are
not Python (``conformance.export``); the rest of this docstring is about the first.

Runs ``python -m pytest`` on the suite's test modules (``conformance/tests``)
with the plugin ``conformance.plugin``, in a fresh interpreter so that pytest
imports (and assertion-rewrites) the suite itself. The exit status is pytest's:
0 everything not skipped or excluded passed; 1 some test failed, or the test
process ended without completing the report (it died: one line
``ERROR: conformance: ...`` says how); 2 interrupted; 3 internal error; 4 usage
error: a bad option, or ``--impl`` / its factory / its capabilities, the
exclusion file, the report path or the goldens directory is unusable (one line
``ERROR: conformance: ...`` says which); 5 no test selected.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from . import PROFILES, SUITE_DIR
from .isolation import DEFAULT_CALL_TIMEOUT, describe_exit
from .profiles import PROFILES as PRECISION_PROFILES

ENTRY_POINT = "adaperceiver_conformance"
POLL_S = 0.5  # how often the runner looks at the test process and its report
LINGER_S = 10.0  # how long the test process may outlive its completed report


def plugin_autoloaded() -> bool:
    """True when pytest will load ``conformance.plugin`` itself through the entry point."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.name == ENTRY_POINT and ep.value == "conformance.plugin"
               for ep in importlib.metadata.entry_points(group="pytest11"))


def pytest_args(args: argparse.Namespace) -> list[str]:
    """The pytest command line equivalent to the parsed ``args``."""
    argv = [str(SUITE_DIR), "--conformance-impl", args.impl,
            "--conformance-profile", args.profile,
            *(["--conformance-precision", args.precision] if args.precision else []),
            "--conformance-call-timeout", str(args.call_timeout),
            "--conformance-isolation", args.isolation]
    for option, value in (("--conformance-exclusions", args.exclusions),
                          ("--conformance-report", args.report),
                          ("--conformance-seed", args.seed),
                          ("--conformance-published", args.published_goldens)):
        if value is not None:
            argv += [option, str(value)]
    if not plugin_autoloaded():
        argv += ["-p", "conformance.plugin"]
    if args.jobs > 1:
        argv += ["-n", str(args.jobs)]
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            argv += ["-p", "xdist.plugin"]
    return argv + list(args.pytest_args)


def split_profiles(names: Sequence[str]) -> tuple[str, str | None]:
    """``--profile`` values -> (Hypothesis profile, precision profile or None); ``ValueError``
    when two names of one kind are given."""
    effort = [n for n in names if n in PROFILES]
    precision = [n for n in names if n in PRECISION_PROFILES]
    for kind, given in (("Hypothesis (ci, thorough)", effort),
                        (f"precision ({', '.join(PRECISION_PROFILES)})", precision)):
        if len(given) > 1:
            raise ValueError(f"--profile: at most one {kind} profile, got {', '.join(given)}")
    return (effort or ["ci"])[0], (precision or [None])[0]


def _positive(kind: type, option: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{option} must be a finite number > 0, got {text!r}")
        return value
    return parse


def read_report(report: Path, run_id: str) -> dict | None:
    """The report this run wrote (its ``run.run_id`` is ``run_id``), else None."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    run = data.get("run") if isinstance(data, dict) else None
    return data if isinstance(run, dict) and run.get("run_id") == run_id else None


def incomplete(report: Path, run_id: str, returncode: int) -> str | None:
    """Why the run's report shows it did not finish (None: it did)."""
    data = read_report(report, run_id)
    if data is not None:
        if data.get("complete"):
            return None
        done = data.get("totals", {})
        so_far = f" after {sum(done.values())} test(s)" if isinstance(done, dict) else ""
    else:
        so_far = " before the first test"
    how = describe_exit(-returncode if returncode < 0 else returncode)
    return (f"the test process {how}{so_far} without completing the report: a port that exits "
            "or crashes its process (run with --isolation process, the default, to make that "
            "a failure of one test)")


def wait_for(process: subprocess.Popen, report: Path, run_id: str) -> int:
    """The test process's exit status. A process still alive ``LINGER_S`` seconds after its
    report was completed (a non-daemon thread the port left in it, with ``--isolation
    none``) is stopped, and the status the report recorded is returned."""
    completed, seen = None, None
    while True:
        try:
            return process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:  # the test process got it too and ends the run itself
            return process.wait()
        if completed is None:
            try:
                stamp = report.stat().st_mtime_ns
            except OSError:
                continue
            data = read_report(report, run_id) if stamp != seen else None
            seen = stamp
            if data is not None and data.get("complete"):
                completed = (time.monotonic(), data.get("exit_status"))
        elif time.monotonic() - completed[0] > LINGER_S:
            process.kill()
            process.wait()
            print(f"warning: conformance: the test process was still running {LINGER_S:g} s "
                  "after completing the report (a non-daemon thread left by the port?); it "
                  "was stopped", file=sys.stderr)
            return completed[1] if isinstance(completed[1], int) else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-goldens"]:
        from .export import main as export_main

        return export_main(argv[1:])
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, metavar="PACKAGE.MODULE:FACTORY",
                        help="zero-argument factory returning the port's adapter")
    parser.add_argument("--exclusions", metavar="FILE",
                        help="exclusion file ending in .toml or .json (test-id prefixes by "
                             "reason)")
    parser.add_argument("--report", metavar="FILE", help="write the JSON report to FILE")
    parser.add_argument("--profile", action="append", default=[], metavar="NAME",
                        choices=[*PROFILES, *PRECISION_PROFILES],
                        help="given up to twice, one name of each kind: how many Hypothesis "
                             "examples, ci (default: fast and deterministic) or thorough; and "
                             "the precision profile whose tolerances apply, one of "
                             f"{', '.join(PRECISION_PROFILES)} (default: the dtype the port "
                             "declares in its Capabilities)")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed of the random order of goldens and invariants (default: a "
                             "fresh one, printed in the summary and the report)")
    parser.add_argument("--published-goldens", metavar="DIR",
                        help="directory of recorded published-checkpoint goldens")
    parser.add_argument("--call-timeout", type=_positive(float, "--call-timeout"),
                        default=DEFAULT_CALL_TIMEOUT, metavar="SECONDS",
                        help="time limit of every adapter call, the factory included; a call "
                             "past it fails its test and the port's worker is restarted "
                             f"(default {DEFAULT_CALL_TIMEOUT:g})")
    parser.add_argument("--jobs", type=_positive(int, "--jobs"), default=1, metavar="N",
                        help="run the tests in N processes (pytest-xdist), each with its own "
                             "port worker; the report is the serial run's (default 1)")
    parser.add_argument("--isolation", choices=("process", "none"), default="process",
                        help="process (default): the port runs in a worker process, killed "
                             "and restarted on a timeout or crash; none: in the test process "
                             "(for a debugger; no time limit)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    try:
        args.profile, args.precision = split_profiles(args.profile)
    except ValueError as error:
        parser.error(str(error))
    if args.jobs > 1 and importlib.util.find_spec("xdist") is None:
        print("ERROR: conformance: --jobs needs pytest-xdist: pip install pytest-xdist "
              "(or the package's [test] extra)", file=sys.stderr)
        return 4
    run_id = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="adaperceiver-conformance-run-") as tmp:
        report = Path(args.report) if args.report else Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pytest", *pytest_args(args), "--conformance-run-id",
                   run_id, *([] if args.report else ["--conformance-runner-report", str(report)])]
        returncode = wait_for(subprocess.Popen(command), report, run_id)
        if returncode in (0, 1) or returncode < 0:  # tests ran: the report must be complete
            problem = incomplete(report, run_id, returncode)
            if problem is not None:
                print(f"ERROR: conformance: {problem}", file=sys.stderr)
                return returncode if returncode > 0 else 1
    return returncode


if __name__ == "__main__":
    sys.exit(main())
