"""Repros in the report rebuild the failing case exactly (`python -m conformance.repro`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from suite_helpers import HERE, ROOT, run_suite

from conformance.adapters.oracle import factory as oracle_factory
from conformance.repro import rerun
from conformance.strategies import materialize


def test_scenario_repro_is_deterministic(tmp_path):
    """A property scenario rebuilds byte-identical checkpoints and identical images."""
    scenario = {"kind": "classification",
                "config": {"embed_dim": 8, "num_heads": 2, "depth": 2, "max_latent_tokens": 6,
                           "mask_token_grans": [2, 6], "mat_dims": [4, 8], "img_size": 8,
                           "patch_size": 4, "num_classes": 3},
                "weights_seed": 5, "checkpoint_dtype": "float32", "image_shape": [2, 3, 8, 4],
                "image_seed": 9, "call_args": {"num_tokens": 4}}
    first, images_a = materialize(scenario, tmp_path / "a")
    second, images_b = materialize(scenario, tmp_path / "b")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (images_a == images_b).all() and images_a.shape == (2, 3, 8, 4)
    assert rerun(oracle_factory(), scenario)[0] == "reproduced: PASSES now"


def test_repro_command_reruns_a_reported_failure(tmp_path):
    """MAT-1: the failure of a width-ignoring port, re-run from its report, fails again and
    lists every stage's error with block_0 the first out of tolerance."""
    done, report = run_suite("suite_mutants:ignores_width", tmp_path, "-k",
                             "test_golden and cls-width-4")
    assert done.returncode == 1 and report["totals"]["failed"] == 1
    rerun_done = subprocess.run(
        [sys.executable, "-m", "conformance.repro", "--impl", "suite_mutants:ignores_width",
         "--report", str(tmp_path / "report.json")], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}, timeout=300)
    assert rerun_done.returncode == 0, rerun_done.stderr
    out = rerun_done.stdout
    assert "test_golden[cls-width-4]" in out and json.dumps({"mat_dim": 4}) in out
    stage_lines = out.split("stage errors (forward order):")[1].strip().splitlines()
    assert stage_lines[0].strip().startswith("patches: max_rel")
    first_bad = next(line for line in stage_lines if "rtol" in line
                     and float(line.split("max_rel ")[1].split()[0]) > 1e-4)
    assert first_bad.strip().startswith("block_0")
