"""Published-checkpoint goldens, exercised on small local checkpoints standing in for the hub.

`python -m conformance.goldens record --model DIR` runs the oracle on the checkpoint in DIR;
the suite's `checkpoint` test then verifies a port against the recorded file when the
weights are found ($ADAPERCEIVER_CHECKPOINT_DIR / $ADAPERCEIVER_DISTILL_CHECKPOINT_DIR).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from suite_helpers import ROOT, outcomes, run_suite

from conformance import published
from conformance.cases import MODELS

TEST_ID = "test_published.py::test_published_checkpoint"


def _record(tmp_path, recipe: str):
    checkpoint = MODELS[recipe].write(tmp_path / "weights" / recipe)
    out = tmp_path / "published" / f"{recipe}.safetensors"
    done = subprocess.run([sys.executable, "-m", "conformance.goldens", "record", "--model",
                           str(checkpoint), "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return checkpoint, out


@pytest.mark.parametrize(("recipe", "env_var"), [("cls-flex-block", "ADAPERCEIVER_CHECKPOINT_DIR"),
                                                 ("distill-flex-block",
                                                  "ADAPERCEIVER_DISTILL_CHECKPOINT_DIR")])
def test_record_then_verify(tmp_path, recipe, env_var):
    """GOLD-1: a recorded golden holds every granularity, width and several depths (and an
    exit per policy for classification) plus the weights' sha256; the PyTorch float32 port
    passes the checkpoint test against it when the env var points at the weights."""
    checkpoint, golden_file = _record(tmp_path, recipe)
    golden = published.read(golden_file)
    config = MODELS[recipe].config()
    args = golden.calls
    assert {a.get("num_tokens") for a in args} >= set(config["mask_token_grans"])
    assert {a.get("mat_dim") for a in args} >= set(config["mat_dims"])
    assert {a.get("depth") for a in args} >= {1, config["depth"]}
    if recipe.startswith("cls"):
        assert {a.get("exit_policy") for a in args} >= {"batch_mean", "per_sample"}
    assert golden.weights_sha256 == published.sha256(checkpoint / "model.safetensors")

    done, report = run_suite("conformance.adapters.torch_port:float32", tmp_path, "-k",
                             "published", options=("--published-goldens",
                                                   str(golden_file.parent)),
                             env={env_var: str(checkpoint)})
    assert done.returncode == 0, done.stdout[-4000:]
    assert outcomes(report) == {f"{TEST_ID}[{recipe}]": "passed"}


def test_skips_without_weights_or_with_other_weights(tmp_path):
    """Without the weights on disk the checkpoint test skips naming the env var; with
    weights whose sha256 differs from the recorded one it skips naming both hashes."""
    _, golden_file = _record(tmp_path, "cls-flex-block")
    other = MODELS["cls-full"].write(tmp_path / "other")
    options = ("--published-goldens", str(golden_file.parent))
    env = {"ADAPERCEIVER_CHECKPOINT_DIR": "", "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    _, missing = run_suite("conformance.adapters.torch_port:float32", tmp_path, "-k",
                           "published", options=options, env=env)
    (test,) = missing["tests"]
    assert test["outcome"] == "skipped" and "ADAPERCEIVER_CHECKPOINT_DIR" in test["message"]
    _, mismatch = run_suite("conformance.adapters.torch_port:float32", tmp_path, "-k",
                            "published", options=options,
                            env={**env, "ADAPERCEIVER_CHECKPOINT_DIR": str(other)})
    (test,) = mismatch["tests"]
    assert test["outcome"] == "skipped" and "sha256" in test["message"]
