"""`python -m conformance.repro` checks its input before rebuilding anything (issue 24): every
malformed report ends in one line naming the field, exit 4, quickly, with no allocation."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
from suite_helpers import run_command

from conformance.report import FORMAT, FORMAT_VERSION
from conformance.repro_input import report_schema

ORACLE = "conformance.adapters.oracle:factory"
TINY = {"embed_dim": 8, "num_heads": 2, "depth": 2, "max_latent_tokens": 6,
        "mask_token_grans": [2, 6], "mat_dims": [4, 8], "img_size": 8, "patch_size": 4,
        "num_classes": 3}
SCENARIO = {"kind": "classification", "config": TINY, "weights_seed": 5,
            "checkpoint_dtype": "float32", "image_shape": [2, 3, 8, 4], "image_seed": 9,
            "call_args": {"num_tokens": 4}}
GOLDEN = {"golden": "cls-gran-8", "checkpoint": "cls-flex-block", "call_args": {"num_tokens": 8}}


def _report(repro=None, **failure) -> dict:
    entry = {"id": "test_x.py::t", "clauses": ["GOLD-1"], "repro": repro or GOLDEN, **failure}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "failures": [entry]}


def _without(key: str) -> dict:
    report = _report()
    del report["failures"][0][key]
    return report


def _fresh_handle(**images) -> dict:
    return {"check": "fresh-handle", "checkpoint": "cls-flex-block", "history": [],
            "method": "classify", "images": images, "call_args": {}}


CASES = [  # (id, file content: a JSON-ready value, raw text or None for no file, expected)
    ("missing-file", None, "report.json: no such file or directory"),
    ("not-json", "{'failures': []", "not a JSON report"),
    ("json-list", [1, 2], "the report: [1, 2] is not of type 'object'"),
    ("wrong-format-version", {**_report(), "format_version": 99}, "format_version: 2 was expected"),
    ("no-failures", {"format": FORMAT, "format_version": FORMAT_VERSION},
     "the report: 'failures' is a required property"),
    ("failure-without-repro", _without("repro"), "failures[0]: 'repro' is a required property"),
    ("failure-without-clauses", _without("clauses"),
     "failures[0]: 'clauses' is a required property"),
    ("unknown-golden", _report({**GOLDEN, "golden": "cls-nope"}),
     "failures[0].repro.golden: unknown golden case 'cls-nope'"),
    ("unknown-checkpoint", _report({**_fresh_handle(golden="cls-gran-8"), "checkpoint": "nope"}),
     "failures[0].repro.checkpoint: unknown golden checkpoint 'nope'"),
    ("unknown-image-golden", _report(_fresh_handle(golden="nope")),
     "failures[0].repro.images.golden: unknown golden case 'nope'"),
    ("call-args-string", _report({**SCENARIO, "call_args": "num_tokens=4"}),
     "failures[0].repro.call_args: 'num_tokens=4' is not of type 'object'"),
    ("config-not-mapping", _report({**SCENARIO, "config": [8, 2]}),
     "failures[0].repro.config: [8, 2] is not of type 'object'"),
    ("config-invalid", _report({**SCENARIO, "config": {**TINY, "num_heads": 3}}),
     "failures[0].repro.config: embed_dim (8) must be divisible by num_heads (3)"),
    ("depth-1e9", _report({**SCENARIO, "config": {**TINY, "depth": 10**9}}),
     "failures[0].repro.config: embed_dim=8, depth=1000000000 makes"),
    ("embed-dim-1e6", _report({**SCENARIO, "config": {**TINY, "embed_dim": 10**6,
                                                      "num_heads": 1000, "mat_dims": [8]}}),
     "failures[0].repro.config: embed_dim=1000000, depth=2 makes"),
    ("huge-images", _report(_fresh_handle(image_shape=[1000000, 3, 1000, 1000], image_seed=0)),
     "failures[0].repro.images: images of shape (1000000, 3, 1000, 1000) need"),
    ("negative-shape", _report({**SCENARIO, "image_shape": [2, -3, 8, 4]}),
     "failures[0].repro.image_shape[1]: -3 is less than the minimum of 0"),
    ("bad-numpy-type", _report({**SCENARIO, "call_args": {"num_tokens": {"numpy": "float7",
                                                                         "value": 4}}}),
     "failures[0].repro.call_args: data type 'float7' not understood"),
    ("bad-rows", _report(_fresh_handle(golden="cls-gran-8", rows=[2, 9])),
     "failures[0].repro.images.rows: [2, 9] is not a non-empty range of the batch of 3"),
    ("bad-impl", _report(), "ERROR: conformance: --impl 'nope:factory': importing nope failed"),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_malformed_report_is_one_line(tmp_path, content, expected):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    impl = "nope:factory" if expected.startswith("ERROR: conformance: --impl") else ORACLE
    start = time.monotonic()
    done = run_command("-m", "conformance.repro", "--impl", impl, "--report", str(path),
                       timeout=60)
    assert time.monotonic() - start < 60
    assert done.returncode == 4, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(("ERROR: conformance.repro: ", "ERROR: conformance: ")), line
    assert expected in line, line
    assert done.stdout == ""


def test_schema_accepts_the_format_version_of_the_reports():
    """The shipped schema describes the version report.py writes."""
    assert report_schema()["properties"]["format_version"]["const"] == FORMAT_VERSION
    jsonschema.Draft202012Validator.check_schema(report_schema())
    jsonschema.validate(_report(SCENARIO), report_schema())
