"""Run ``python -m conformance`` in a subprocess, as a port author would, and read its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The suite's own run fails on any warning, as this project's tests do (pyproject filterwarnings).
STRICT_WARNINGS = ["-W", "error", "-W", "ignore::UserWarning:torch._dynamo.*"]


def run_suite(impl: str, tmp_path: Path, *pytest_args: str, options: tuple[str, ...] = (),
              env: dict[str, str] | None = None, cwd: Path = ROOT
              ) -> tuple[subprocess.CompletedProcess, dict[str, Any] | None]:
    """(finished process, parsed JSON report or None). ``impl`` may name a module in this folder."""
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "conformance", "--impl", impl, "--report", str(report),
               *options, "--", "-q", *STRICT_WARNINGS, *pytest_args]
    env = dict(env or {})
    paths = [env.pop("PYTHONPATH", ""), str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **env}
    done = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=900)
    return done, json.loads(report.read_text()) if report.exists() else None


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    """Test id -> outcome."""
    return {test["id"]: test["outcome"] for test in report["tests"]}


def run_command(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` with this folder and the repository on PYTHONPATH."""
    paths = [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def failed_clauses(report: dict[str, Any]) -> set[str]:
    """Clauses the report counts as failed."""
    return {clause for clause, counts in report["clauses"].items() if counts["failed"]}
