"""MkDocs hook: publish the repository's ``spec/`` folder as the site's ``spec/`` section.

The spec files stay where they are (``spec/*.md`` next to ``docs/``) and are added to
the build as generated files under ``spec/``; ``spec/README.md`` becomes the section
index. Links keep working both on GitHub and in the site: in the repository
``docs/`` and ``spec/`` are siblings, in the site ``spec/`` sits below the site root,
so relative links that cross between the two folders are mapped:

* in a spec page, ``../docs/PAGE.md`` becomes ``../PAGE.md``;
* in a top-level docs page, ``../spec/FILE`` becomes ``spec/FILE``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"

# A markdown link or image target starting with the given relative prefix: "](../docs/".
_SPEC_TO_DOCS = re.compile(r"\]\(\.\./docs/")
_DOCS_TO_SPEC = re.compile(r"\]\(\.\./spec/")


def on_files(files, config):
    """Add every file of ``spec/`` to the build as ``spec/<name>``."""
    for path in sorted(SPEC_DIR.iterdir()):
        if path.is_file():
            files.append(File.generated(config, f"spec/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    """Map links between ``docs/`` and ``spec/`` from the repository layout to the site's."""
    if page.file.src_uri.startswith("spec/"):
        return _SPEC_TO_DOCS.sub("](../", markdown)
    if "/" not in page.file.src_uri:
        return _DOCS_TO_SPEC.sub("](spec/", markdown)
    return markdown
