"""Which repository files the site publishes, under which site path, and the mapping of
relative links from the repository layout to the site's.

In the repository ``docs/``, ``spec/`` and ``conformance/`` are siblings and
CHANGELOG.md sits at the root; in the site the spec and the conformance manual sit
one folder below the site root. So, in a page published from ``spec/`` or
``conformance/``, ``../docs/PAGE.md`` becomes ``../PAGE.md``; in a top-level docs page,
``../spec/FILE`` becomes ``spec/FILE`` and ``../conformance/README.md`` becomes
``conformance/README.md`` (one ``../`` fewer at every folder depth of ``docs/``).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import ROOT

SPEC_DIR = ROOT / "spec"
SPEC_VERSION_FILE = SPEC_DIR / "VERSION"


def published_files() -> dict[str, Path]:
    """Site path -> repository file, for every file published from outside ``docs/``."""
    files = {f"spec/{path.name}": path for path in sorted(SPEC_DIR.iterdir()) if path.is_file()}
    files["conformance/README.md"] = ROOT / "conformance" / "README.md"
    files["changelog.md"] = ROOT / "CHANGELOG.md"
    return files


# Pages written by the hook at build time (no source file anywhere).
GENERATED_PAGES = ("spec/coverage.md", "conformance/report.md")


def spec_version() -> str:
    """The specification's version, single source ``spec/VERSION``."""
    return SPEC_VERSION_FILE.read_text(encoding="utf-8").strip()


_UP_TO_DOCS = re.compile(r"\]\(\.\./docs/")
_CHANGELOG_LINKS = re.compile(r"\]\((?:\.\./)?(spec|docs|conformance)/")


def map_links(markdown: str, src_uri: str) -> str:
    """Rewrite repository-relative links of the page ``src_uri`` to site-relative ones."""
    if src_uri.startswith(("spec/", "conformance/README")):
        return _UP_TO_DOCS.sub("](../", markdown)
    if src_uri == "changelog.md":  # CHANGELOG.md links spec/..., docs/... from the root
        return _CHANGELOG_LINKS.sub(
            lambda m: "](" if m.group(1) == "docs" else f"]({m.group(1)}/", markdown)
    if src_uri in GENERATED_PAGES:
        return markdown
    depth = src_uri.count("/")  # a page of docs/ at this folder depth: one "../" fewer
    to_sibling = re.compile(r"\]\(" + r"\.\./" * (depth + 1) + r"(spec|conformance)/")
    return to_sibling.sub(lambda m: "](" + "../" * depth + m.group(1) + "/", markdown)


_CODE_SPAN = re.compile(r"`[^`\n]*`")


def unescape_table_pipes_in_code(markdown: str) -> str:
    """In table rows, ``\\|`` inside a code span becomes ``|``: GitHub needs the escape
    there, Python-Markdown keeps code spans whole (it does not split them at ``|``) and
    would show the backslash (``ci\\|thorough``)."""
    return "\n".join(
        _CODE_SPAN.sub(lambda m: m.group(0).replace("\\|", "|"), line)
        if line.lstrip().startswith("|") else line
        for line in markdown.split("\n"))
