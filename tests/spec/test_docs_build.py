"""The documentation site builds with ``mkdocs build --strict`` (broken links, missing nav
pages and bad anchors fail it), including the spec pages that docs/hooks.py adds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# <script src="http..."> or <link rel="stylesheet" href="http..."> (either attribute order)
REMOTE_ASSET = re.compile(r"<script[^>]*\ssrc=[\"']?(?:https?:)?//[^>]*>|"
                          r"<link[^>]*stylesheet[^>]*href=[\"']?(?:https?:)?//[^>]*>|"
                          r"<link[^>]*href=[\"']?(?:https?:)?//[^>]*stylesheet[^>]*>")


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
    pages = list(site.rglob("*.html"))
    remote = [f"{page.relative_to(site)}: {tag}" for page in pages
              for tag in REMOTE_ASSET.findall(page.read_text(encoding="utf-8"))]
    assert not remote, f"the site loads scripts or stylesheets from another host: {remote[:5]}"
    semantics = (site / "spec" / "semantics" / "index.html").read_text(encoding="utf-8")
    assert 'id="MASK-3"' in semantics, "clause headings lost their stable #ID anchor"
    assert '<a href="#MASK-3">MASK-3</a>' in semantics, "clause ids are not linked"
    for figure in ("pipeline", "masks", "matryoshka", "rope", "early-exit"):
        assert (site / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    version = (ROOT / "spec" / "VERSION").read_text().strip()
    assert f"Specification version {version}" in semantics, "spec version not in the footer"
    assert (site / "assets" / "katex" / "katex.min.js").is_file()
    shutil.rmtree(site)


def test_goldens_manifest_records_the_spec_version():
    """The goldens manifest names the spec version (spec/VERSION) it was generated under."""
    manifest = json.loads((ROOT / "conformance" / "goldens" / "manifest.json").read_text())
    assert manifest["generator"]["spec"] == (ROOT / "spec" / "VERSION").read_text().strip()
