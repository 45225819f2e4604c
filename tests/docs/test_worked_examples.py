"""The worked examples page (issue "documentation, third pass", teach item 4): one golden
case per clause family, whose call arguments, tolerances and numbers are those of the
committed goldens (read here from ``conformance/goldens/``, not from the archive the page
reads), and whose prose says what the oracle computes for those arguments."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.goldens import GOLDENS_DIR, STAGE_PREFIX, case_tensors, load_manifest
from reference_numpy import masks

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
from sitegen import worked  # noqa: E402

PAGE = ROOT / "docs" / "conformance" / "examples.md"
MARKER = re.compile(r"<!--\s*golden-example:\s*(\S+)((?:\s+[a-z_0-9]+)*)\s*-->")
FAMILIES = ("MASK", "ROPE", "MAT", "READ", "WRITE", "EXIT", "ANY")
LINE = re.compile(r"^(?P<name>[a-z_/0-9]+)(?P<index>\[[^\]]*\])? = \[(?P<values>[^\]]*)\]$",
                  re.MULTILINE)


def _golden_cases() -> dict[str, dict]:
    manifest = load_manifest(GOLDENS_DIR)
    return {case["id"]: case for case in manifest["cases"] + manifest["anytime_cases"]}


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    """Case id -> the Markdown its marker becomes."""
    return {m.group(1): worked.case_markdown(m.group(1), m.group(2).split())
            for m in MARKER.finditer(PAGE.read_text(encoding="utf-8"))}


def test_every_clause_family_has_an_example(examples):
    """At least one example each for MASK, ROPE, MAT, READ/WRITE, EXIT and ANY."""
    cases = _golden_cases()
    families = {clause.split("-")[0] for case_id in examples
                for clause in cases[case_id]["clauses"]}
    assert set(FAMILIES) <= families, set(FAMILIES) - families


def test_numbers_equal_the_golden_files(examples):
    """Every excerpt shown (inputs, outputs, stages) equals the committed golden values
    at the index it names, to the 10 digits printed."""
    cases = _golden_cases()
    checked = 0
    for case_id, markdown in examples.items():
        tensors = case_tensors(GOLDENS_DIR, cases[case_id])
        for m in LINE.finditer(markdown):
            name = m["name"].replace("stages/", STAGE_PREFIX)
            values = np.array([float(v) for v in m["values"].split(",")])
            expected = np.asarray(tensors[name], dtype=np.float64)
            if m["index"]:
                expected = expected[(0,) * (expected.ndim - 1)][:worked.EXCERPT]
            np.testing.assert_allclose(values, expected.ravel(), rtol=1e-9, atol=0,
                                       err_msg=f"{case_id}: {m.group(0)}")
            checked += 1
        assert re.search(r"^logits\[", markdown, re.MULTILINE), case_id
    assert checked >= 3 * len(examples)


def test_call_and_tolerance_are_the_cases(examples):
    """The call line names the case's method and arguments; the tolerance row its TOL-1
    rtol for float32 and float64 (a per-case override applied)."""
    from conformance.goldens import case_tolerance
    from conformance.tolerances import default_tolerance

    cases = _golden_cases()
    for case_id, markdown in examples.items():
        case = cases[case_id]
        args = "".join(f", {k}={v!r}" for k, v in case["call_args"].items())
        assert f"`ref.{case['method']}(weights, config, images{args})`" in markdown
        for dtype in ("float32", "float64"):
            rtol = case_tolerance(case, default_tolerance(dtype), dtype).rtol
            assert f"{rtol:g} ({dtype} port)" in markdown, (case_id, dtype)


def test_prose_states_what_the_oracle_computes():
    """G(N), the RoPE factor and the grid's granularities stated in the prose."""
    page = PAGE.read_text(encoding="utf-8")
    cases = _golden_cases()
    config = json.loads((GOLDENS_DIR / "checkpoints" / "cls-flex-block" / "config.json")
                        .read_text())
    grans, L = config["mask_token_grans"], config["max_latent_tokens"]
    assert cases["cls-offgrid-6"]["call_args"] == {"num_tokens": 6}
    assert f"granularities ${grans}$" in page
    assert f"$G(6) = {masks.granularities(grans, 6)}$" in page
    assert f"$L = {L}$" in page
    assert cases["cls-ntk-24"]["call_args"]["num_tokens"] / L == 1.5
    assert "$N / L = 1.5$" in page
    combined = cases["grid-cls-combined"]["call_args"]
    assert f"$G = {masks.granularities(combined['token_grans'], combined['num_tokens'])}$" in page
    assert "mat_dim=[4, 16, 7]" in page and cases["cls-width-per-sample"]["call_args"] == {
        "mat_dim": [4, 16, 7]}


def test_unknown_case_is_refused():
    with pytest.raises(ValueError, match=r"golden-example: 'nope' is not a golden case id"):
        worked.case_markdown("nope", [])
