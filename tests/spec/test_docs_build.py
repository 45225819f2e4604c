"""The documentation site builds with ``mkdocs build --strict`` (broken links, missing nav
pages and bad anchors fail it), including the spec pages that docs/hooks.py adds; the
build needs no torch (the ``[docs]`` extra does not install it), and the built site
covers the whole public API with every clause id linked."""

from __future__ import annotations

import ast
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
# The build runs with `import torch` failing, as in a venv with only the [docs] extra.
BUILD_WITHOUT_TORCH = ("import sys; sys.modules['torch'] = None; "
                       "from mkdocs.__main__ import cli; cli()")
# Packages whose __all__ is the public API, and public modules outside any __all__.
PUBLIC_PACKAGES = ("reference_numpy", "adaperceiver")
PUBLIC_MODULES = ("adaperceiver.anytime", "adaperceiver.compiled", "adaperceiver.preprocess",
                  "reference_numpy.preprocess", "conformance.protocol")
FIGURES = ("pipeline", "masks", "matryoshka", "rope", "early-exit", "tradeoff")
CLAUSE_MENTION = re.compile(r"\b[A-Z]+-\d+\b")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with --strict, torch unimportable."""
    pytest.importorskip("mkdocs", reason="mkdocs is installed by the 'test' and 'docs' extras")
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-c", BUILD_WITHOUT_TORCH, "build", "--strict", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield site
    shutil.rmtree(site)


def test_mkdocs_strict_build(site):
    """The site, spec pages (GOLD-1, CKPT-1 and the rest) included, builds without warnings
    and without torch, and every figure was drawn (as SVG)."""
    assert (site / "index.html").is_file()
    assert (site / "spec" / "semantics.html").is_file()
    pages = list(site.rglob("*.html"))
    remote = [f"{page.relative_to(site)}: {tag}" for page in pages
              for tag in REMOTE_ASSET.findall(page.read_text(encoding="utf-8"))]
    assert not remote, f"the site loads scripts or stylesheets from another host: {remote[:5]}"
    semantics = (site / "spec" / "semantics.html").read_text(encoding="utf-8")
    assert 'id="MASK-3"' in semantics, "clause headings lost their stable #ID anchor"
    assert '<a href="#MASK-3">MASK-3</a>' in semantics, "clause ids are not linked"
    for figure in FIGURES:
        svg = (site / "figures" / f"{figure}.svg").read_text(encoding="utf-8")
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and len(svg) > 10_000, figure
    assert "Figure not drawn" not in (site / "tutorial" / "exit.html").read_text()
    version = (ROOT / "spec" / "VERSION").read_text().strip()
    assert f"Specification version {version}" in semantics, "spec version not in the footer"
    assert (site / "assets" / "katex" / "katex.min.js").is_file()
    manual = (site / "conformance" / "index.html").read_text(encoding="utf-8")
    assert "ci\\|thorough" not in manual, "a table's escaped pipe shows its backslash"


def _public_names() -> dict[str, str]:
    """Canonical dotted path of every public object: each package's ``__all__`` (resolved
    through its ``from .module import name`` lines or its lazy ``_SOURCES`` table) and
    every public top-level function and class of PUBLIC_MODULES (its ``__all__`` where it
    has one). Read with ast: nothing
    is imported."""
    found = {}
    for package in PUBLIC_PACKAGES:
        tree = ast.parse((ROOT / package / "__init__.py").read_text())
        source = {alias.name: f"{package}.{node.module}" for node in tree.body
                  if isinstance(node, ast.ImportFrom) and node.level == 1
                  for alias in node.names}
        lazy = next((ast.literal_eval(node.value) for node in tree.body  # name -> submodule
                     if isinstance(node, ast.Assign) and any(
                         isinstance(t, ast.Name) and t.id == "_SOURCES" for t in node.targets)),
                    {})  # of a package that imports on first use (adaperceiver/__init__.py)
        source.update({name: f"{package}.{module}" for name, module in lazy.items()})
        for name in _all(tree):
            found[f"{package}.{name}"] = f"{source[name]}.{name}"
    for module in PUBLIC_MODULES:
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        names = _all(tree) or [node.name for node in tree.body
                               if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                               and not node.name.startswith("_")]
        found.update({f"{module}.{name}": f"{module}.{name}" for name in names})
    return found


def _all(tree: ast.Module) -> list[str]:
    """The module's ``__all__`` list, or [] when it has none."""
    return next((ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "__all__"), [])


def test_api_reference_covers_the_public_api(site):
    """Every public object has an entry (its heading id) in the API reference pages."""
    html = "".join(page.read_text(encoding="utf-8") for page in (site / "api").rglob("*.html"))
    names = _public_names()
    assert len(names) > 30, names
    missing = [public for public, canonical in names.items() if f'id="{canonical}"' not in html]
    assert not missing, f"public objects missing from docs/api/: {missing}"


def test_api_reference_links_every_clause_id(site):
    """In the API pages' prose (outside code and headings) every clause id is a link to
    its heading in the spec, and there are many of them."""
    defined = set(_clause_ids())
    for page in (site / "api").glob("*.html"):
        html = page.read_text(encoding="utf-8")
        article = html.split('<article', 1)[1].split('</article>', 1)[0]
        prose = re.sub(r"<(pre|code|h[1-6]|a)\b.*?</\1>", "", article, flags=re.DOTALL)
        prose = re.sub(r"<[^>]+>", " ", prose)
        unlinked = sorted({m for m in CLAUSE_MENTION.findall(prose) if m in defined})
        assert not unlinked, f"{page.relative_to(site)}: clause ids not linked: {unlinked}"
        links = re.findall(r'href="\.\./spec/[a-z]+\.html#([A-Z]+-\d+)"', html)
        assert set(links) <= defined
    oracle = (site / "api" / "reference_numpy.html").read_text(encoding="utf-8")
    assert oracle.count('href="../spec/semantics.html#') > 30


def _clause_ids() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests" / "spec"))
    import traceability
    return sorted(dict(traceability.heading_definitions()))


def test_changelog_releases_are_dated_and_quote_no_speed_ups():
    """Every released version has a date; measured speed-ups live in docs/performance.md
    only (one source), so the changelog quotes no "1.2-1.3x" ratios."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\](.*)$", text, re.MULTILINE)
    assert releases, "no released version in CHANGELOG.md"
    undated = [v for v, rest in releases if not re.search(r"\d{4}-\d{2}-\d{2}", rest)]
    assert not undated, f"releases without a date: {undated}"
    ratios = re.findall(r"\d+(?:\.\d+)?\s*-\s*\d+(?:\.\d+)?x\b", text)
    assert not ratios, f"speed-ups quoted in the changelog: {ratios}"


def test_goldens_manifest_records_the_spec_version():
    """The goldens manifest names the spec version (spec/VERSION) it was generated under."""
    manifest = json.loads((ROOT / "conformance" / "goldens" / "manifest.json").read_text())
    assert manifest["generator"]["spec"] == (ROOT / "spec" / "VERSION").read_text().strip()
