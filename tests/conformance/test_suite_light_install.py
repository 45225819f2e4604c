"""Issue 25 item 4: the suite needs only numpy, safetensors, pytest and hypothesis (the
``conformance`` extra): importing it never imports torch, and in a fresh virtual environment
with only that extra it runs against the oracle adapter."""

from __future__ import annotations

import subprocess
import sys
import venv

import pytest
from suite_helpers import ROOT

SUITE_MODULES = ("conformance.plugin", "conformance.adapters.oracle", "conformance.repro",
                 "conformance.profiles", "conformance.snippet", "conformance.tests.conftest",
                 "conformance.tests.test_goldens", "conformance.tests.test_invariants",
                 "conformance.tests.test_properties", "conformance.tests.test_errors",
                 "conformance.tests.test_anytime", "conformance.tests.test_published",
                 "conformance.tests.test_loading", "conformance.tests.test_preprocessing")


def test_importing_the_suite_does_not_import_torch():
    code = ("import importlib, sys\n"
            f"for name in {SUITE_MODULES!r}: importlib.import_module(name)\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', "
            "'onnxruntime', 'mkdocs', 'playwright', 'matplotlib'})\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_suite_runs_with_only_the_conformance_extra(tmp_path):
    """A venv without system packages, `pip install .[conformance]` (from the package index),
    then the suite on the oracle adapter: goldens of one checkpoint pass, torch is absent."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{ROOT}[conformance]"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    absent = subprocess.run([str(python), "-c", "import torch"], capture_output=True,
                            cwd=tmp_path)
    assert absent.returncode != 0  # the extra does not pull torch
    done = subprocess.run([str(python), "-m", "conformance", "--impl",
                           "conformance.adapters.oracle:factory", "--report",
                           str(tmp_path / "r.json"), "--", "-q", "-k",
                           "test_golden and cls-full"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "3 passed" in done.stdout
