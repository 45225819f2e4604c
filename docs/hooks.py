"""MkDocs hook: everything the site adds to plain Markdown (helpers in ``docs/sitegen/``).

* Publishes files that live outside ``docs/`` (one copy of each text): ``spec/*`` under
  ``spec/``, ``conformance/README.md`` as the conformance manual, ``CHANGELOG.md`` as
  ``changelog.md``; maps their relative links to the site layout (``sitegen.sources``).
* Generates pages: the clause -> tests page (``spec/coverage.md``) and the rendering
  of a real conformance report (``conformance/report.md``).
* Draws the figures from the NumPy oracle into ``figures/`` (``sitegen.figures``); they
  are never committed, so they cannot drift from the code, and a figure that cannot be
  drawn fails the build (no torch is needed: the oracle draws them all).
* The annotated oracle (``sitegen.annotated``): ``oracle-stage`` markers become a stage's
  clauses, its oracle source (read at build time) and its outputs on a bundled test
  canvas, with figures. The goldens (``sitegen.archive``): ``conformance export-goldens``
  packed into a zip offered for download, its checksums on the ``goldens-archive``
  marker's page; ``golden-example`` markers become worked examples read from that zip
  (``sitegen.worked``).
* Gives clause headings stable ``#ID`` anchors and links every clause id mention
  (``sitegen.clauses``), and fills ``cli-output`` markers with real output (``sitegen.cli``).
* Puts the spec version (``spec/VERSION``) in ``extra.spec_version`` (footer, spec overview).
"""

from __future__ import annotations

import logging
from pathlib import Path

from mkdocs.structure.files import File
from sitegen import annotated, archive, clauses, cli, figures, report, search, sources, worked

log = logging.getLogger("mkdocs.hooks.adaperceiver")
SPEC_SEARCH_BOOST = 4  # Material's per-page search boost for the specification pages


def on_config(config):
    """Expose the spec version to templates and pages."""
    config.extra["spec_version"] = sources.spec_version()
    return config


def on_files(files, config):
    """Add the published files, the generated pages and the figures to the build."""
    for site_path, path in sources.published_files().items():
        files.append(File.generated(config, site_path, abs_src_path=str(path)))
    clause_files = clauses.clause_files()
    files.append(File.generated(config, "spec/coverage.md",
                                content=clauses.coverage_page(clause_files)))
    files.append(File.generated(config, "conformance/report.md", content=report.page()))
    drawn, _ = figures.render_all()  # raises FigureError: the build fails
    for name, data in drawn.items():
        files.append(File.generated(config, f"figures/{name}", content=data))
    for name, data in annotated.render_figures().items():
        files.append(File.generated(config, f"figures/{name}", content=data))
    files.append(File.generated(config, archive.SITE_PATH, content=archive.build().data))
    return files


def on_page_markdown(markdown, page, config, files):
    """Map repository links, anchor and link clause ids, show the spec version, fill
    the ``oracle-stage``, ``goldens-archive``, ``golden-example`` and ``cli-output``
    markers."""
    src_uri = page.file.src_uri
    markdown = sources.map_links(markdown, src_uri)
    if src_uri.startswith("spec/"):
        markdown = clauses.anchor_headings(markdown)
        # Search: a clause id finds its clause before the pages that mention it.
        page.meta.setdefault("search", {}).setdefault("boost", SPEC_SEARCH_BOOST)
    if src_uri == "conformance/README.md":
        markdown = sources.unescape_table_pipes_in_code(markdown)
    if src_uri == "spec/README.md":
        version = config.extra["spec_version"]
        markdown = markdown.replace(
            "\n", f"\n\n!!! info \"Specification version {version}\"\n"
            f"    Single source: `spec/VERSION`. Changes are listed in the "
            f"[changelog](../changelog.md).\n", 1)
    markdown = worked.fill(archive.fill(annotated.fill(markdown, src_uri), src_uri))
    markdown = clauses.link_clauses(markdown, src_uri, clauses.clause_files())
    return cli.fill(markdown)


def on_post_build(config):
    """Search snippets without raw LaTeX: formulas in the search index become plain text."""
    search.plain_math_in_index(Path(config.site_dir) / "search" / "search_index.json")


def on_page_content(html, page, config, files):
    """Link the clause ids of the API reference, which mkdocstrings renders to HTML from
    docstrings after ``on_page_markdown`` has run."""
    if page.file.src_uri.startswith("api/"):
        html = clauses.link_clauses_html(html, page.url, clauses.clause_files())
    return html
