"""One notation everywhere (issue "documentation, third pass", wrong item 4): the symbols
of the oracle's docstrings are those of the notation table of spec/semantics.md, with the
table's meaning.

Checked where it is practical: every shape tuple written in a docstring of
``reference_numpy`` uses only symbols of the table (a batch of images is exactly
``(B, C_in, H_img, W_img)``, one image ``(C_in, H_img, W_img)``), and every "symbol word"
legend ("C classes", "K blocks") names a meaning that the table gives that symbol.
Docstrings are read with ast: nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEMANTICS = ROOT / "spec" / "semantics.md"
ORACLE = sorted((ROOT / "reference_numpy").glob("*.py"))
# LaTeX of the table's first column -> the ASCII spelling docstrings use.
_LATEX = {r"C_\text{in}": "C_in", r"H_\text{img}": "H_img", r"W_\text{img}": "W_img"}
_SHAPE = re.compile(r"\(((?:[A-Za-z_][A-Za-z_0-9]*|\d+)"
                    r"(?:, (?:[A-Za-z_][A-Za-z_0-9/*+ ]*|\d+))+)\)")
_SYMBOL = re.compile(r"^(?:[A-Z](?:_[a-z]+)?|hd)$")
_LEGEND = re.compile(r"\b([A-Z](?:_in|_img)?|hd) (images|channels|classes|blocks|heads|latents|"
                     r"patches|units|tokens)\b")


def notation() -> dict[str, str]:
    """ASCII symbol -> its meaning, from the notation table of spec/semantics.md."""
    table = SEMANTICS.read_text(encoding="utf-8").split("## Notation", 1)[1].split("\n\n", 2)[1]
    symbols = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for latex in re.findall(r"\$([^$]+)\$", cells[0]):
            for name in latex.split(","):
                name = _LATEX.get(name.strip(), name.strip()).removesuffix("(N)")
                if _SYMBOL.match(name):
                    symbols[name] = f"{cells[1]} {cells[2]}"
    return symbols


def docstrings() -> list[tuple[str, str]]:
    """(where, docstring) of every module, class and function of the oracle."""
    found = []
    for path in ORACLE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                text = ast.get_docstring(node)
                if text:
                    found.append((f"{path.name}:{getattr(node, 'name', 'module')}", text))
    return found


def test_the_table_has_the_symbols_the_issue_names():
    """The table is the base: the shape letters and the symbols that were missing."""
    symbols = notation()
    for name in ("B", "C_in", "H_img", "W_img", "P", "M", "D", "H", "hd", "F", "C", "E", "L",
                 "N", "K", "T"):
        assert name in symbols, name
    table = SEMANTICS.read_text(encoding="utf-8").split("## Notation", 1)[1].split("\n\n", 2)[1]
    for latex in (r"\Lambda", r"\omega", r"\lambda", "$z$", "$u$", "$g$"):
        assert latex in table, latex
    assert "classes" in symbols["C"] and "blocks" in symbols["K"]


def test_docstring_shapes_use_the_table_symbols():
    """Every symbol in a shape tuple of an oracle docstring is in the table; images are
    (B, C_in, H_img, W_img) or (C_in, H_img, W_img)."""
    symbols = notation()
    problems, shapes = [], 0
    for where, text in docstrings():
        for match in _SHAPE.finditer(text):
            parts = [part.strip() for part in match.group(1).split(",")]
            if parts[0] != "B" and not all(_SYMBOL.match(p) or p.isdigit() for p in parts):
                continue  # not a shape: a call's arguments, an example
            shapes += 1
            unknown = [p for p in parts if _SYMBOL.match(p) and p not in symbols]
            if unknown:
                problems.append(f"{where}: {match.group(0)} uses {unknown}")
            image = parts[1:] if parts[0] == "B" else parts
            if {"W", "W_img"} & set(parts) and (image[1:] != ["H_img", "W_img"]
                                                or image[0] not in ("C_in", "1", "3")):
                problems.append(f"{where}: image shape {match.group(0)}")
    assert shapes > 30, f"only {shapes} shapes found: the pattern no longer matches"
    assert not problems, "\n".join(problems)


def test_docstring_legends_agree_with_the_table():
    """"C classes", "K blocks": a symbol named with a meaning has the table's meaning."""
    symbols = notation()
    problems, legends = [], 0
    for where, text in docstrings():
        for symbol, word in _LEGEND.findall(text):
            legends += 1
            meaning = symbols.get(symbol, "")
            if word[:5] not in meaning and not (word == "units" and symbol == "F"):
                problems.append(f"{where}: '{symbol} {word}', the table: {meaning!r}")
    assert legends > 5, legends
    assert not problems, "\n".join(problems)
