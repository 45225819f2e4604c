"""Traceability between the specification and the tests (spec/README.md, "How tests name clauses").

A clause is defined by a ``### ID — Title`` heading in one spec file and listed in
``spec/CLAUSES.md``. A test or conformance check covers a clause when the id appears in
its source. These tests check that the index and the spec files agree, that every
clause is covered, that every id the tests name exists, and that the documentation
site's navigation points at real pages.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec"
INDEX = SPEC / "CLAUSES.md"
THIS_FILE = Path(__file__).resolve()

# Prefixes of clause ids; a new prefix must be added here and in spec/README.md.
KNOWN_PREFIXES = (
    "NUM", "ATTN", "PATCH", "LAT", "READ", "BLOCK", "MASK", "ROPE", "MAT", "DEPTH", "EXIT",
    "WRITE", "HEAD", "OUT", "DIST", "ARG", "STATE", "CKPT", "GOLD", "TOL", "ANY",
)
# "### MASK-3 — Block mask rule" in a spec file
HEADING = re.compile(r"^###\s+([A-Z]+-\d+)\s+—\s+\S", re.MULTILINE)
# "| MASK-3 | semantics.md | ..." in spec/CLAUSES.md
INDEX_ROW = re.compile(r"^\|\s*([A-Z]+-\d+)\s*\|\s*([^|\s]+)\s*\|", re.MULTILINE)
NAMED_ID = re.compile(r"\b(?:" + "|".join(KNOWN_PREFIXES) + r")-\d+\b")  # an id in test source
TEXT_SUFFIXES = {".py", ".md", ".json", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ini"}


def _sort_key(clause_id: str) -> tuple[str, int]:
    prefix, number = clause_id.rsplit("-", 1)
    return prefix, int(number)


def _listing(ids) -> str:
    return ", ".join(sorted(set(ids), key=_sort_key))


def index_rows() -> list[tuple[str, str]]:
    """(id, file) for every row of spec/CLAUSES.md, in order."""
    return INDEX_ROW.findall(INDEX.read_text(encoding="utf-8"))


def heading_definitions() -> list[tuple[str, str]]:
    """(id, file name) for every ``### ID — Title`` heading in the spec files."""
    found = []
    for path in sorted(SPEC.glob("*.md")):
        if path == INDEX:
            continue
        found += [(clause_id, path.name) for clause_id in HEADING.findall(path.read_text("utf-8"))]
    return found


def _source_files(folders=(ROOT / "tests", ROOT / "conformance"),
                  suffixes=TEXT_SUFFIXES) -> list[Path]:
    """Text files under ``folders`` that may name clauses (not this file)."""
    files = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(ROOT).parts
            if (not path.is_file() or path.suffix not in suffixes or path == THIS_FILE
                    or any(part.startswith(".") or part == "__pycache__" for part in relative)
                    or relative[:2] == ("conformance", "spec")):  # a packaged copy of spec/
                continue
            files.append(path)
    return files


def named_ids(files: list[Path] | None = None) -> dict[str, list[str]]:
    """Clause id -> ["path:line", ...] where ``files`` (default: every text file under tests/
    and conformance/) name it."""
    where = defaultdict(list)
    for path in _source_files() if files is None else files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for line_no, line in enumerate(text.splitlines(), start=1):
            for clause_id in NAMED_ID.findall(line):
                where[clause_id].append(f"{path.relative_to(ROOT)}:{line_no}")
    return dict(where)


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
                         f"{THIS_FILE.relative_to(ROOT)}; add them there and to spec/README.md")


def test_every_clause_is_named_by_a_test_or_conformance_check():
    """Every clause id defined in spec/ is named in test code: a Python file under tests/ or
    conformance/tests/ (the suite's own test modules). Docs and data files do not count."""
    defined = {clause_id for clause_id, _ in index_rows()} | {
        clause_id for clause_id, _ in heading_definitions()}
    test_code = _source_files((ROOT / "tests", ROOT / "conformance" / "tests"), {".py"})
    uncovered = defined - set(named_ids(test_code))
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
                        for cid in sorted(unknown, key=_sort_key))
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


def test_mkdocs_nav_references_existing_files():
    """Every nav entry of mkdocs.yml is a page in docs/, or in spec/ (added by docs/hooks.py)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs_dir = ROOT / config.get("docs_dir", "docs")
    pages = _nav_pages(config["nav"])
    assert pages, "mkdocs.yml has an empty nav"

    def source(page: str) -> Path:
        if page.startswith("spec/"):  # docs/hooks.py publishes spec/* under spec/
            return SPEC / page.removeprefix("spec/")
        return docs_dir / page

    missing = [page for page in pages if not source(page).is_file()]
    hooks = [hook for hook in config.get("hooks", []) if not (ROOT / hook).is_file()]
    assert not missing and not hooks, (
        f"mkdocs.yml nav names pages that do not exist: {missing}; missing hook files: {hooks}")
