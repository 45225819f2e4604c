"""Every Python example on the documentation site runs (issue "documentation website").

Collects the ```` ```python ```` fences of every Markdown page the site publishes
(``docs/``, ``spec/``, ``conformance/README.md``, ``CHANGELOG.md``) and runs each page's
fences in order in one fresh namespace, as a reader pasting them would. Pages that
load a checkpoint by a placeholder path get a small random checkpoint in the published
layout at that path (the current directory is a temporary one). A page whose snippets
assert something (the tutorial's do) fails here when the assertion stops holding.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import reference_numpy as ref

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*(ROOT / "docs").rglob("*.md"), *(ROOT / "spec").glob("*.md"),
                ROOT / "conformance" / "README.md", ROOT / "CHANGELOG.md"])
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```",
                   re.MULTILINE | re.DOTALL)
# Placeholder checkpoint paths of the pages -> the model kind written there.
STAND_INS = {
    "path/to/adaperceiver-v1-in1k-ft": "classification",
    "path/to/checkpoint": "classification",
    "path/to/adaperceiver-v1": "distill",
}


def python_fences(page: Path) -> list[str]:
    """The code of every ```python fence of a page, dedented to its fence's indent."""
    fences = []
    for match in FENCE.finditer(page.read_text(encoding="utf-8")):
        indent = len(match.group("indent"))
        fences.append("\n".join(line[indent:] for line in match.group("code").splitlines()))
    return fences


PAGES_WITH_CODE = [page for page in PAGES if python_fences(page)]


def test_the_collector_finds_the_tutorial_and_guides():
    """The examples below are not vacuous: the pages that must have code have it."""
    names = {page.relative_to(ROOT).as_posix() for page in PAGES_WITH_CODE}
    expected = {"docs/budget.md", "docs/learning.md", "docs/architecture.md",
                "docs/tutorial/by-hand.md", "docs/tutorial/exit.md", "docs/tutorial/masks.md"}
    assert expected <= names, f"no python fence found in {sorted(expected - names)}"


@pytest.mark.parametrize("page", PAGES_WITH_CODE,
                         ids=[p.relative_to(ROOT).as_posix() for p in PAGES_WITH_CODE])
def test_page_examples_run(page, tmp_path, monkeypatch, capsys):
    """Run a page's python fences in order in one namespace, from a temporary directory
    holding stand-in checkpoints at the placeholder paths the page names."""
    text = page.read_text(encoding="utf-8")
    for placeholder, kind in STAND_INS.items():
        if placeholder in text:
            config = ref.tiny_config(kind)
            ref.save_checkpoint(tmp_path / placeholder, config, ref.random_weights(config))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_example_{page.stem}"}
    for number, code in enumerate(python_fences(page), start=1):
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}[python fence {number}]", "exec"),
                 namespace)
        except Exception as error:
            raise AssertionError(
                f"example {number} of {page.relative_to(ROOT)} failed: {error!r}\n{code}"
            ) from error
    assert os.getcwd() == str(tmp_path)
