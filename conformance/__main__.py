"""``conformance`` / ``python -m conformance``: run the conformance suite against a port.

    conformance --impl PACKAGE.MODULE:FACTORY [--exclusions FILE.toml|FILE.json]
                [--report report.json] [--profile ci|thorough] [--seed N]
                [--published-goldens DIR] [-- extra pytest arguments]

Runs ``python -m pytest`` on the suite's test modules (``conformance/tests``)
with the plugin ``conformance.plugin``, in a fresh interpreter so that pytest
imports (and assertion-rewrites) the suite itself. The exit status is pytest's:
0 everything not skipped or excluded passed; 1 some test failed; 2 interrupted;
3 internal error; 4 usage error: a bad option, or ``--impl`` / its factory /
its capabilities, the exclusion file, the report path or the goldens directory
is unusable (one line ``ERROR: conformance: ...`` says which); 5 no test selected.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Sequence

from . import PROFILES, SUITE_DIR

ENTRY_POINT = "adaperceiver_conformance"


def plugin_autoloaded() -> bool:
    """True when pytest will load ``conformance.plugin`` itself through the entry point."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.name == ENTRY_POINT and ep.value == "conformance.plugin"
               for ep in importlib.metadata.entry_points(group="pytest11"))


def pytest_args(args: argparse.Namespace) -> list[str]:
    """The pytest command line equivalent to the parsed ``args``."""
    argv = [str(SUITE_DIR), "--conformance-impl", args.impl,
            "--conformance-profile", args.profile]
    for option, value in (("--conformance-exclusions", args.exclusions),
                          ("--conformance-report", args.report),
                          ("--conformance-seed", args.seed),
                          ("--conformance-published", args.published_goldens)):
        if value is not None:
            argv += [option, str(value)]
    if not plugin_autoloaded():
        argv += ["-p", "conformance.plugin"]
    return argv + list(args.pytest_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, metavar="PACKAGE.MODULE:FACTORY",
                        help="zero-argument factory returning the port's adapter")
    parser.add_argument("--exclusions", metavar="FILE",
                        help="exclusion file ending in .toml or .json (test-id prefixes by "
                             "reason)")
    parser.add_argument("--report", metavar="FILE", help="write the JSON report to FILE")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci",
                        help="ci (default): fast and deterministic; thorough: many examples")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed of the random order of goldens and invariants (default: a "
                             "fresh one, printed in the summary and the report)")
    parser.add_argument("--published-goldens", metavar="DIR",
                        help="directory of recorded published-checkpoint goldens")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    command = [sys.executable, "-m", "pytest", *pytest_args(parser.parse_args(argv))]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
