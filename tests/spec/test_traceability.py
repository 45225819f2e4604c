"""Traceability between the specification and the tests (spec/README.md, "How tests name clauses").

A clause is defined by a ``### ID — Title`` heading in one spec file and listed in
``spec/CLAUSES.md``. A test or conformance check covers a clause when the id appears in
its source. These tests check that the index and the spec files agree, that every
clause is covered, that every id the tests name exists, and that the documentation
site's navigation points at real pages.
"""

from __future__ import annotations

import yaml
from traceability import (
    KNOWN_PREFIXES,
    ROOT,
    SPEC,
    coverage_files,
    heading_definitions,
    index_rows,
    named_ids,
    sort_key,
)


def _listing(ids) -> str:
    return ", ".join(sorted(set(ids), key=sort_key))


def test_index_and_spec_headings_define_the_same_ids():
    """CLAUSES.md and the spec files' headings list the same set of clause ids."""
    indexed = {clause_id for clause_id, _ in index_rows()}
    defined = {clause_id for clause_id, _ in heading_definitions()}
    assert indexed, "spec/CLAUSES.md lists no clause ids"
    only_index = indexed - defined
    only_spec = defined - indexed
    assert not only_index and not only_spec, (
        f"in spec/CLAUSES.md but without a '### ID — Title' heading in a spec file: "
        f"[{_listing(only_index)}]; defined in a spec file but missing from CLAUSES.md: "
        f"[{_listing(only_spec)}]"
    )


def test_each_id_is_defined_once_in_the_file_the_index_names():
    """No id is listed or defined twice, and each is defined in the file CLAUSES.md names."""
    rows = index_rows()
    definitions = heading_definitions()
    repeated_rows = [cid for cid in {c for c, _ in rows} if sum(c == cid for c, _ in rows) > 1]
    repeated_defs = [cid for cid in {c for c, _ in definitions}
                     if sum(c == cid for c, _ in definitions) > 1]
    defined_in = dict(definitions)
    misplaced = [f"{cid} (index: {file}, heading in: {defined_in[cid]})"
                 for cid, file in rows if cid in defined_in and defined_in[cid] != file]
    missing_files = sorted({file for _, file in rows if not (SPEC / file).is_file()})
    assert not (repeated_rows or repeated_defs or misplaced or missing_files), (
        f"listed twice in CLAUSES.md: [{_listing(repeated_rows)}]; defined twice: "
        f"[{_listing(repeated_defs)}]; defined in another file than CLAUSES.md says: "
        f"{misplaced}; spec files named by CLAUSES.md that do not exist: {missing_files}"
    )


def test_index_uses_known_prefixes():
    """Every clause prefix is one the coverage scan recognises (KNOWN_PREFIXES)."""
    unknown = sorted({cid.rsplit("-", 1)[0] for cid, _ in index_rows()} - set(KNOWN_PREFIXES))
    assert not unknown, (f"clause prefixes {unknown} are not in KNOWN_PREFIXES of "
                         f"tests/spec/traceability.py; add them there and to spec/README.md")


def test_every_clause_is_named_by_a_test_or_conformance_check():
    """Every clause id defined in spec/ is named in test code: a Python file under tests/ or
    conformance/tests/ (the suite's own test modules). Docs and data files do not count."""
    defined = {clause_id for clause_id, _ in index_rows()} | {
        clause_id for clause_id, _ in heading_definitions()}
    uncovered = defined - set(named_ids(coverage_files()))
    assert not uncovered, (
        f"{len(uncovered)} clause id(s) named by no test under tests/ or conformance/tests/: "
        f"[{_listing(uncovered)}]"
    )


def test_every_named_clause_id_exists():
    """Every clause-like id named under tests/ or conformance/ is defined in spec/."""
    defined = {clause_id for clause_id, _ in index_rows()} | {
        clause_id for clause_id, _ in heading_definitions()}
    unknown = {cid: places for cid, places in named_ids().items() if cid not in defined}
    details = "; ".join(f"{cid} at {', '.join(unknown[cid][:3])}"
                        for cid in sorted(unknown, key=sort_key))
    assert not unknown, f"clause ids named in tests but not defined in spec/: {details}"


def _nav_pages(node) -> list[str]:
    """Every page path of an mkdocs ``nav`` tree (external URLs excluded)."""
    if isinstance(node, str):
        return [] if "://" in node else [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def _site_sources():
    """docs/sitegen/sources.py: what docs/hooks.py publishes from outside docs/ and generates."""
    import sys

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from sitegen import sources
    finally:
        sys.path.remove(str(ROOT / "docs"))
    return sources


def test_mkdocs_nav_references_existing_files():
    """Every nav entry of mkdocs.yml is a page in docs/, a file docs/hooks.py publishes
    (spec/*, conformance/README.md, CHANGELOG.md) or a page it generates."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs_dir = ROOT / config.get("docs_dir", "docs")
    pages = _nav_pages(config["nav"])
    assert pages, "mkdocs.yml has an empty nav"
    sources = _site_sources()
    published = sources.published_files()

    def exists(page: str) -> bool:
        if page in sources.GENERATED_PAGES:
            return True
        if page in published:
            return published[page].is_file()
        return (docs_dir / page).is_file()

    missing = [page for page in pages if not exists(page)]
    hooks = [hook for hook in config.get("hooks", []) if not (ROOT / hook).is_file()]
    assert not missing and not hooks, (
        f"mkdocs.yml nav names pages that do not exist: {missing}; missing hook files: {hooks}")
