"""``conformance export-goldens DIR``: the goldens as .npy files, a manifest and sha256s
(issue 25 item 5a; GOLD-1, TOL-1)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference_numpy
from conformance.__main__ import main as conformance_main
from conformance.goldens import GOLDENS_DIR, case_tensors, load_manifest
from conformance.profiles import PROFILES
from conformance.tolerances import errors

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "goldens"
    assert conformance_main(["export-goldens", str(out)]) == 0
    return out, json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _npy_header(path: Path) -> dict:
    """The header dict of a .npy file, parsed from its bytes (format 1.0: magic, version,
    uint16 little-endian header length, Python-literal dict)."""
    raw = path.read_bytes()
    assert raw[:6] == b"\x93NUMPY" and raw[6:8] == b"\x01\x00", path
    length = int.from_bytes(raw[8:10], "little")
    return ast.literal_eval(raw[10:10 + length].decode("latin1"))


def test_every_file_has_its_sha256_and_nothing_else_is_written(exported):
    out, manifest = exported
    assert manifest["format"] == "adaperceiver-conformance-goldens-npy"
    assert manifest["format_version"] == 1
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(manifest["sha256"])
    for file, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / file).read_bytes()).hexdigest() == digest, file


def test_every_case_is_exported_with_npy_files_as_declared(exported):
    out, manifest = exported
    source = load_manifest(GOLDENS_DIR)
    assert [c["id"] for c in manifest["cases"]] == [
        c["id"] for c in source["cases"] + source["anytime_cases"]]
    for case in manifest["cases"]:
        assert (out / case["checkpoint_dir"] / "config.json").is_file()
        assert (out / case["checkpoint_dir"] / "model.safetensors").is_file()
        assert set(case["inputs"]) == {"images"}
        assert "logits" in case["outputs"]
        for group in ("inputs", "outputs", "stages"):
            for entry in case[group].values():
                header = _npy_header(out / entry["file"])
                assert header["descr"] == entry["dtype"] and entry["dtype"][0] in "<|"
                assert header["fortran_order"] is False
                assert list(header["shape"]) == entry["shape"]
        assert case["rtol"] == {"float32": PROFILES["float32"].rtol,
                                "float64": PROFILES["float64"].rtol}


@pytest.mark.parametrize("case_id", ["cls-default", "distill-width", "digits-exit-per_sample-mid",
                                     "grid-odd"])
def test_exported_arrays_equal_the_suites_goldens(exported, case_id):
    out, manifest = exported
    source = load_manifest(GOLDENS_DIR)
    golden = next(c for c in source["cases"] + source["anytime_cases"] if c["id"] == case_id)
    tensors = case_tensors(GOLDENS_DIR, golden)
    case = next(c for c in manifest["cases"] if c["id"] == case_id)
    assert case["call_args"] == golden["call_args"] and case["clauses"] == golden["clauses"]
    files = {**case["inputs"], **case["outputs"],
             **{f"stages.{k}": v for k, v in case["stages"].items()}}
    assert set(files) == set(tensors)
    for name, entry in files.items():
        array = np.load(out / entry["file"], allow_pickle=False)
        assert array.dtype == tensors[name].dtype and np.array_equal(array, tensors[name]), name


def test_the_oracle_on_exported_files_reproduces_the_exported_outputs(exported):
    out, manifest = exported
    case = next(c for c in manifest["cases"] if c["id"] == "cls-exit-batch_mean-mid")
    config, weights = reference_numpy.load_checkpoint(out / case["checkpoint_dir"])
    images = np.load(out / case["inputs"]["images"]["file"], allow_pickle=False)
    result = reference_numpy.trace(weights, config, images, **case["call_args"])
    expected = np.load(out / case["outputs"]["logits"]["file"], allow_pickle=False)
    assert errors(result.logits, expected)[1] <= case["rtol"]["float64"]
    assert np.array_equal(result.exit_depths,
                          np.load(out / case["outputs"]["exit_depths"]["file"]))


def test_a_non_empty_dir_is_refused_without_force(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert conformance_main(["export-goldens", str(tmp_path)]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert conformance_main(["export-goldens", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "mine.txt").read_text() == "keep"
    assert (tmp_path / "manifest.json").is_file()


def test_an_unwritable_dir_is_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "goldens"
    assert conformance_main(["export-goldens", str(target)]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be written" in err and str(target) in err


def test_help_of_the_subcommand_and_the_main_command():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sub = subprocess.run([sys.executable, "-m", "conformance", "export-goldens", "--help"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert sub.returncode == 0 and "usage: conformance export-goldens" in sub.stdout
    top = subprocess.run([sys.executable, "-m", "conformance", "--help"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert top.returncode == 0 and "conformance export-goldens DIR" in top.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node (the README example's language) "
                    "is not installed")
def test_the_readme_example_in_javascript_reads_the_export(exported, tmp_path):
    out, manifest = exported
    readme = (REPO / "conformance" / "README.md").read_text(encoding="utf-8")
    script = readme.split("```javascript\n", 1)[1].split("```", 1)[0]
    (tmp_path / "read-goldens.js").write_text(script)
    run = subprocess.run(["node", str(tmp_path / "read-goldens.js"), str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    first = float(np.load(out / "cases/cls-default/logits.npy").ravel()[0])
    assert run.stdout.split() == ["cls-default", "classify", "{}", "checkpoints/cls-flex-block",
                                  "logits", "3,1,10", "first", repr(first), "rtol", "0.0001"]
