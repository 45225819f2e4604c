"""Which spec clauses exist and which tests name them (spec/README.md, "How tests name clauses").

One computation, two users: ``tests/spec/test_traceability.py`` asserts on it, and the
documentation hook (``docs/hooks.py``) publishes it as the "clause -> tests" page and
uses :func:`heading_definitions` to link every clause id to its heading.

A clause is defined by a ``### ID — Title`` heading in one spec file and listed in
``spec/CLAUSES.md``. A test or conformance check covers a clause when the id appears in
its source.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec"
INDEX = SPEC / "CLAUSES.md"
# This module and the test that enforces traceability quote ids as examples; they cover none.
NOT_COVERAGE = (Path(__file__).resolve(), ROOT / "tests" / "spec" / "test_traceability.py")

# Prefixes of clause ids; a new prefix must be added here and in spec/README.md.
KNOWN_PREFIXES = (
    "NUM", "ATTN", "PATCH", "LAT", "READ", "BLOCK", "MASK", "ROPE", "MAT", "DEPTH", "EXIT",
    "WRITE", "HEAD", "OUT", "DIST", "ARG", "STATE", "CKPT", "GOLD", "TOL", "ANY", "LIM", "PRE",
)
# "### MASK-3 — Block mask rule" in a spec file
HEADING = re.compile(r"^###\s+([A-Z]+-\d+)\s+—\s+(\S.*?)\s*$", re.MULTILINE)
# "| MASK-3 | semantics.md | ..." in spec/CLAUSES.md
INDEX_ROW = re.compile(r"^\|\s*([A-Z]+-\d+)\s*\|\s*([^|\s]+)\s*\|", re.MULTILINE)
NAMED_ID = re.compile(r"\b(?:" + "|".join(KNOWN_PREFIXES) + r")-\d+\b")  # an id in test source
TEXT_SUFFIXES = {".py", ".md", ".json", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ini"}
# Where test code lives: a clause counts as covered only when named here.
TEST_CODE_FOLDERS = (ROOT / "tests", ROOT / "conformance" / "tests")


def sort_key(clause_id: str) -> tuple[str, int]:
    """Order ids by prefix, then numerically (MASK-2 before MASK-10)."""
    prefix, number = clause_id.rsplit("-", 1)
    return prefix, int(number)


def index_rows() -> list[tuple[str, str]]:
    """(id, file) for every row of spec/CLAUSES.md, in order."""
    return INDEX_ROW.findall(INDEX.read_text(encoding="utf-8"))


def heading_titles() -> dict[str, tuple[str, str]]:
    """id -> (spec file name, title) for every ``### ID — Title`` heading in the spec files."""
    found = {}
    for path in sorted(SPEC.glob("*.md")):
        if path == INDEX:
            continue
        for clause_id, title in HEADING.findall(path.read_text("utf-8")):
            found.setdefault(clause_id, (path.name, title))
    return found


def heading_definitions() -> list[tuple[str, str]]:
    """(id, file name) for every ``### ID — Title`` heading in the spec files (repeats kept)."""
    found = []
    for path in sorted(SPEC.glob("*.md")):
        if path == INDEX:
            continue
        found += [(clause_id, path.name)
                  for clause_id, _ in HEADING.findall(path.read_text("utf-8"))]
    return found


def source_files(folders=(ROOT / "tests", ROOT / "conformance"),
                 suffixes=TEXT_SUFFIXES) -> list[Path]:
    """Text files under ``folders`` that may name clauses (not those of ``NOT_COVERAGE``)."""
    files = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(ROOT).parts
            if (not path.is_file() or path.suffix not in suffixes or path in NOT_COVERAGE
                    or any(part.startswith(".") or part == "__pycache__" for part in relative)
                    or relative[:2] == ("conformance", "spec")):  # a packaged copy of spec/
                continue
            files.append(path)
    return files


def coverage_files() -> list[Path]:
    """The Python files whose mention of an id counts as coverage."""
    return source_files(TEST_CODE_FOLDERS, {".py"})


def named_ids(files: list[Path] | None = None) -> dict[str, list[str]]:
    """Clause id -> ["path:line", ...] where ``files`` (default: every text file under tests/
    and conformance/) name it."""
    where = defaultdict(list)
    for path in source_files() if files is None else files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for line_no, line in enumerate(text.splitlines(), start=1):
            for clause_id in NAMED_ID.findall(line):
                where[clause_id].append(f"{path.relative_to(ROOT)}:{line_no}")
    return dict(where)


def _definitions(tree: ast.AST) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function and class of a module."""
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                spans.append((first, child.end_lineno, name))
                visit(child, name + ".")

    visit(tree, "")
    return spans


def covering_tests(files: list[Path] | None = None) -> dict[str, list[str]]:
    """Clause id -> sorted ["path::function", ...]: the innermost function or class of test
    code (default :func:`coverage_files`) whose source names the id; ``path`` alone when
    the id is named at module level (a module docstring or a table of cases)."""
    files = coverage_files() if files is None else files
    covered = defaultdict(set)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        spans = _definitions(ast.parse(text))
        relative = path.relative_to(ROOT).as_posix()
        for line_no, line in enumerate(text.splitlines(), start=1):
            ids = NAMED_ID.findall(line)
            if not ids:
                continue
            enclosing = [span for span in spans if span[0] <= line_no <= span[1]]
            name = max(enclosing, key=lambda span: span[0])[2] if enclosing else None
            for clause_id in ids:
                covered[clause_id].add(f"{relative}::{name}" if name else relative)
    return {clause_id: sorted(places) for clause_id, places in covered.items()}
