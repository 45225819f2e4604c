"""The documentation site builds with ``mkdocs build --strict`` (broken links, missing nav
pages and bad anchors fail it), including the spec pages that docs/hooks.py adds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_strict_build(tmp_path):
    """The site, spec pages (GOLD-1, CKPT-1 and the rest) included, builds without warnings."""
    pytest.importorskip("mkdocs", reason="mkdocs is installed by the 'test' and 'docs' extras")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
    assert (site / "spec" / "semantics" / "index.html").is_file()
    shutil.rmtree(site)
