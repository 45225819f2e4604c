"""Search snippets without raw LaTeX (issue "documentation, third pass", item 9).

Material's search index holds the text of every section, formulas included as the
TeX source arithmatex leaves in the page (``\\(\\operatorname{LN}(x)\\)``). After the build,
``plain_math_in_index`` rewrites each formula of the index as plain text: delimiters
and command names dropped, ``\\frac{a}{b}`` as ``a/b``, Greek letters by name kept as
words. Search still finds the words around a formula, and snippets read as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_MATH = re.compile(r"\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_WRAPPER = re.compile(r"\\(?:operatorname|mathrm|text|textstyle|mathbb|mathcal|hat|tilde|"
                      r"left|right|big|Big|displaystyle|tfrac|dfrac)\b\s*")
_SYMBOLS = {r"\le": "<=", r"\ge": ">=", r"\cdot": "·", r"\times": "x", r"\top": "T",
            r"\odot": "*", r"\infty": "inf", r"\in": "in", r"\dots": "...",
            r"\ldots": "...", r"\quad": " ", r"\qquad": " ", r"\,": " ", r"\;": " ",
            r"\!": "", r"\\": " "}
_COMMAND = re.compile(r"\\([A-Za-z]+)")


def plain(tex: str) -> str:
    """A readable plain-text rendering of a TeX formula."""
    text = re.sub(r"\\begin\{\w+\*?\}|\\end\{\w+\*?\}|&amp;|&", " ", tex)
    text = _FRAC.sub(r"(\1)/(\2)", text)
    text = re.sub(r"\\[dt]?frac\b|\\sqrt\b", lambda m: " sqrt " if "sqrt" in m.group(0) else " ",
                  text)
    for command, replacement in sorted(_SYMBOLS.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(re.escape(command) + r"(?![A-Za-z])", replacement, text)
    text = _WRAPPER.sub("", text)
    text = _COMMAND.sub(r"\1", text)  # \lambda -> lambda
    text = text.replace("{", "").replace("}", "").replace("\\", " ")
    return re.sub(r"\s+", " ", text).strip()


def plain_math_in_index(path: Path) -> None:
    """Rewrite the formulas of Material's ``search_index.json`` at ``path`` as plain text."""
    if not path.is_file():
        return
    index = json.loads(path.read_text(encoding="utf-8"))
    for doc in index.get("docs", []):
        for key in ("text", "title"):
            if key in doc:
                doc[key] = _MATH.sub(lambda m: plain(m.group(1) or m.group(2)), doc[key])
    path.write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
