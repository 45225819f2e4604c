"""Clause ids on the site: stable anchors, links on every mention, the clause -> tests page.

* A spec heading ``### MASK-3 — Block mask rule`` gets the anchor ``#MASK-3`` (not a
  slug of the title), so links survive title changes.
* A link written with the old slug anchor (``semantics.md#mask-3-block-mask-rule``,
  which is what GitHub renders) is pointed at ``#MASK-3``.
* Every mention of a defined id in running text becomes a link to its heading, on
  every page; a wildcard ``MASK-*`` links to the first clause of its prefix (and
  no longer reads as the start of an italic span). Code, math, headings, HTML tags
  and existing links are left alone.
* In HTML that is not written in Markdown (the API reference, which mkdocstrings
  renders from docstrings), ``link_clauses_html`` does the same on the rendered page.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict

import traceability  # tests/spec/traceability.py, on sys.path via sitegen/__init__

PREFIXES = "|".join(traceability.KNOWN_PREFIXES)
_HEADING = re.compile(r"^(###\s+([A-Z]+-\d+)\s+—\s+\S.*?)\s*$", re.MULTILINE)
_SLUG_ANCHOR = re.compile(r"(\]\([^)#\s]*)#(" + PREFIXES.lower() + r")-(\d+)(?:-[a-z0-9_-]*)?\)")
# Spans where an id must not be touched, then the ids themselves (plain or wildcard).
_TOKENS = re.compile(
    r"(?P<keep>^[ \t]*```.*?^[ \t]*```[^\n]*$"      # fenced code block
    r"|^[ \t]*~~~.*?^[ \t]*~~~[^\n]*$"
    r"|^#{1,6}\s[^\n]*$"               # heading
    r"|`+[^`]*?`+"                     # inline code
    r"|\$\$.*?\$\$|\$[^$]+?\$"         # math
    r"|\[[^\]]*\]\([^)]*\)"            # a link already
    r"|<[^>\n]+>"                      # an HTML tag or comment
    r"|\[\^?[^\]]*\]:[^\n]*$)"         # a link reference definition
    r"|(?P<id>\b(?:" + PREFIXES + r")-(?:\d+\b|\\?\*))",
    re.MULTILINE | re.DOTALL,
)


def clause_files() -> dict[str, str]:
    """id -> spec file name defining it."""
    return dict(traceability.heading_definitions())


def anchor_headings(markdown: str) -> str:
    """Give every ``### ID — Title`` heading the explicit anchor ``{#ID}``."""
    return _HEADING.sub(lambda m: f"{m.group(1)} {{#{m.group(2)}}}", markdown)


def link_clauses(markdown: str, src_uri: str, files: dict[str, str]) -> str:
    """Point slug anchors at ``#ID`` and turn every plain id mention into a link."""
    first_of_prefix: dict[str, str] = {}
    for clause_id in sorted(files, key=traceability.sort_key):
        first_of_prefix.setdefault(clause_id.rsplit("-", 1)[0], clause_id)
    here = posixpath.dirname(src_uri)

    def target(clause_id: str) -> str:
        page = f"spec/{files[clause_id]}"
        if page == src_uri:
            return f"#{clause_id}"
        return f"{posixpath.relpath(page, here or '.')}#{clause_id}"

    def slug(match: re.Match) -> str:
        clause_id = f"{match.group(2).upper()}-{match.group(3)}"
        return f"{match.group(1)}#{clause_id})" if clause_id in files else match.group(0)

    def token(match: re.Match) -> str:
        mention = match.group("id")
        if mention is None:
            return match.group(0)
        prefix, number = mention.split("-", 1)
        if number.lstrip("\\") == "*":
            if prefix not in first_of_prefix:
                return mention
            return f"[{prefix}-\\*]({target(first_of_prefix[prefix])})"
        return f"[{mention}]({target(mention)})" if mention in files else mention

    return _TOKENS.sub(token, _SLUG_ANCHOR.sub(slug, markdown))


# HTML: a tag, or a run of text between tags.
_HTML_PIECES = re.compile(r"(<[^>]+>)")
_HTML_SKIP = {"a", "code", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "script", "style",
              "textarea", "title"}
_HTML_TAG = re.compile(r"<(/?)([a-zA-Z0-9]+)")
_PLAIN_ID = re.compile(r"\b(?:" + PREFIXES + r")-\d+\b")


def link_clauses_html(html: str, page_url: str, files: dict[str, str]) -> str:
    """Link every clause id in the text of rendered HTML (not inside links, code,
    headings or scripts) to its heading on the spec page; ``page_url`` is the page's
    site URL (``api/reference_numpy.html``, or ``api/reference_numpy/`` with directory
    URLs)."""
    base = posixpath.dirname(page_url)
    directory_urls = page_url.endswith("/")
    skipped = 0
    pieces = _HTML_PIECES.split(html)
    for index, piece in enumerate(pieces):
        if piece.startswith("<"):
            tag = _HTML_TAG.match(piece)
            if tag and tag.group(2).lower() in _HTML_SKIP and not piece.endswith("/>"):
                skipped += -1 if tag.group(1) else 1
                skipped = max(skipped, 0)
            continue
        if skipped:
            continue

        def link(match: re.Match) -> str:
            clause_id = match.group(0)
            if clause_id not in files:
                return clause_id
            name = files[clause_id].removesuffix(".md")
            page = f"spec/{name}/" if directory_urls else f"spec/{name}.html"
            href = posixpath.relpath(page, base or ".") + ("/" if directory_urls else "")
            return f'<a href="{href}#{clause_id}">{clause_id}</a>'

        pieces[index] = _PLAIN_ID.sub(link, piece)
    return "".join(pieces)


def coverage_page(files: dict[str, str]) -> str:
    """Markdown of the generated "clause -> tests" page."""
    titles = traceability.heading_titles()
    covered = traceability.covering_tests()
    by_file = defaultdict(list)
    for clause_id in sorted(files, key=traceability.sort_key):
        by_file[files[clause_id]].append(clause_id)
    total = len(files)
    uncovered = [cid for cid in files if not covered.get(cid)]
    lines = [
        "# Clause -> tests that cover it",
        "",
        "Generated at build time by `docs/hooks.py` from `tests/spec/traceability.py`, the",
        "computation `tests/spec/test_traceability.py` enforces: a test covers a clause when",
        "the clause id appears in its source (by convention its docstring). Each entry is",
        "`file::function` of the innermost test function or class naming the id, or the",
        "file alone when a module docstring or a module-level table names it.",
        "",
        f"{total} clauses, {total - len(uncovered)} named by at least one test"
        + (f"; not covered: {', '.join(uncovered)}." if uncovered else "."),
        "",
    ]
    for file_name, ids in sorted(by_file.items()):
        lines += [f"## {file_name}", "", "| clause | title | tests |", "|---|---|---|"]
        for clause_id in ids:
            tests = covered.get(clause_id, [])
            cell = "<br>".join(f"`{place}`" for place in tests) or "**none**"
            lines.append(f"| {clause_id} | {titles[clause_id][1]} | {cell} |")
        lines.append("")
    return "\n".join(lines)
