"""The "real report" page: a JSON report committed in ``docs/conformance/``, produced by a
real run of the suite, rendered at build time with the suite's own report code
(``conformance.report.summary_lines``) plus tables for the browser.

The page reads report format ``adaperceiver-conformance-report`` version ``FORMAT_VERSION``
(``worst_errors`` split into ``accuracy``, port against the oracle or goldens, and
``invariant``, port against itself); another format fails the build rather than
rendering empty cells. tests/docs/test_report_page.py checks the numbers of the
rendered tables against the JSON."""

from __future__ import annotations

import json

from . import ROOT

REPORT = ROOT / "docs" / "conformance" / "report-torch-float32.json"
FORMAT, FORMAT_VERSION = "adaperceiver-conformance-report", 2
WORST_SECTIONS = {
    "accuracy": "Worst errors against the oracle",
    "invariant": "Worst errors of invariants (the port against itself)",
}
COMMAND = ("python -m conformance --impl conformance.adapters.torch_port:float32 "
           "--report report-torch-float32.json")


def _cell(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None \
        else str(value)
    return text.replace("|", "\\|")


def number(value) -> str:
    """An error or tolerance as the tables show it: 4 significant digits, or "n/a"."""
    return "n/a" if value is None else f"{value:.4g}"


def worst_errors_table(worst: dict) -> list[str]:
    """Markdown table rows: quantity | max relative | max absolute | rtol | test."""
    rows = ["| quantity | max relative error | max absolute error | rtol | test |",
            "|---|---|---|---|---|"]
    rows += [f"| `{q}` | {number(e['max_rel'])} | {number(e['max_abs'])} | "
             f"{number(e['rtol'])} | `{e['test']}` |" for q, e in worst.items()]
    return rows


def load(path=REPORT) -> dict:
    """The committed report; ValueError when it is not the format this page renders."""
    report = json.loads(path.read_text(encoding="utf-8"))
    found = (report.get("format"), report.get("format_version"))
    if found != (FORMAT, FORMAT_VERSION):
        raise ValueError(f"{path}: report format {found}, the site renders "
                         f"{(FORMAT, FORMAT_VERSION)}; update docs/sitegen/report.py")
    return report


def page() -> str:
    """Markdown of ``conformance/report.md``."""
    from conformance.report import summary_lines

    report = load()
    impl, env, totals = report["implementation"], report["environment"], report["totals"]
    lines = [
        "# A real conformance report",
        "",
        "This is the report of a real run of the suite on this repository's PyTorch model in",
        "float32 (the adapter CI runs), made with",
        "",
        f"```bash\n{COMMAND}\n```",
        "",
        f"on Linux x86-64 CPU (Python {env.get('python')}, NumPy {env.get('numpy')}, "
        f"profile `{report['profile']}`, {report['duration_s']:.0f} s on a shared 2-core "
        "machine). The JSON file is committed unchanged as "
        "[report-torch-float32.json](report-torch-float32.json); this page is rendered from "
        "it when the site is built, so it shows exactly what a port's report looks like. "
        "The format is described in the [manual](README.md).",
        "",
        "## Terminal summary",
        "",
        "What `python -m conformance` prints at the end of the run (the suite's "
        "`summary_lines`, run on the JSON at build time):",
        "",
        "```text",
        *summary_lines(report),
        "```",
        "",
        "## Implementation and capabilities",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| `{key}` | {_cell(value)} |" for key, value in impl.items()],
        "",
        "## Results per clause",
        "",
        f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped, "
        f"{totals['excluded']} excluded.",
        "",
        "| clause | passed | failed | skipped | excluded |",
        "|---|---|---|---|---|",
        *[f"| {clause} | {c['passed']} | {c['failed']} | {c['skipped']} | {c['excluded']} |"
          for clause, c in report["clauses"].items()],
        "",
    ]
    for section, title in WORST_SECTIONS.items():
        lines += [f"## {title}", "", *worst_errors_table(report["worst_errors"][section]), ""]
    lines += [
        "## Tests not passed",
        "",
    ]
    others = [t for t in report["tests"] if t["outcome"] != "passed"]
    if others:
        lines += ["| test | outcome | clauses | message |", "|---|---|---|---|"]
        lines += [f"| `{t['id']}` | {t['outcome']} | {', '.join(t['clauses'])} | "
                  f"{_cell(t.get('message', ''))} |" for t in others]
    else:
        lines.append("Every test passed.")
    return "\n".join(lines) + "\n"
