"""``conformance export-goldens DIR``: the suite's goldens (GOLD-1) as language-neutral files.

    conformance export-goldens DIR [--force]
    python -m conformance export-goldens DIR [--force]

For a port that cannot be imported as a Python adapter (C++, Rust, Swift, ...). Writes::

    DIR/manifest.json                                  the cases, tolerances and sha256s
    DIR/checkpoints/<name>/config.json                 the checkpoints, copied as they are
    DIR/checkpoints/<name>/model.safetensors
    DIR/cases/<case id>/<tensor>.npy                   inputs and expected outputs

Every array is an ``.npy`` file (format 1.0, little-endian, C order, no pickled
objects); the manifest (format ``adaperceiver-conformance-goldens-npy`` version 1,
described in ``conformance/README.md``, "Goldens as files, for non-Python ports")
lists for each case its clauses, checkpoint, call arguments, the name, dtype and
shape of every file, the TOL-1 ``rtol`` of the float32 and float64 profiles, and the
sha256 of every file written. The values are those of the committed goldens
(``conformance/goldens/``, computed by the float64 oracle), unchanged.

Exit status 0 written; 4 DIR unusable (one line ``ERROR: conformance: ...``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .goldens import GOLDENS_DIR, STAGE_PREFIX, case_tensors, case_tolerance, load_manifest, sha256
from .tolerances import default_tolerance

FORMAT = "adaperceiver-conformance-goldens-npy"
FORMAT_VERSION = 1
PROFILE_DTYPES = ("float32", "float64")  # the TOL-1 rows written for every case
INPUTS = ("images",)  # case-file tensors that are inputs; the others are expected outputs
CHECKPOINT_FILES = ("config.json", "model.safetensors")


class ExportError(Exception):
    """DIR cannot be used; the message is one line naming DIR and why."""


def _prepare(out: Path, force: bool) -> None:
    """Create ``out``; refuse a non-empty one without ``force``, or one that cannot be written."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"DIR {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"DIR {str(out)!r} is not empty; pass --force to write into it "
                          "(files of the same names are replaced, others are left)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".export-goldens-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ExportError(f"DIR {str(out)!r} cannot be written: {error.strerror or error}") \
            from error


def save_npy(path: Path, array: np.ndarray) -> np.ndarray:
    """Write ``array`` as a ``.npy`` file in the exchange form of the goldens and the
    subprocess protocol: little-endian, C order, no pickle. Returns the array written."""
    little = np.ascontiguousarray(np.asarray(array).astype(
        np.asarray(array).dtype.newbyteorder("<"), copy=False))
    np.save(path, little, allow_pickle=False)
    return little


def _save(out: Path, relative: str, array: np.ndarray) -> dict[str, Any]:
    """Write one case array under ``out``; its manifest entry."""
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    little = save_npy(path, array)
    return {"file": relative, "dtype": little.dtype.str, "shape": list(little.shape)}


def _export_case(out: Path, root: Path, case: Mapping[str, Any],
                 checkpoint_path: str) -> dict[str, Any]:
    """Write one case's tensors; its manifest entry (GOLD-1 case fields plus files, rtol)."""
    tensors = case_tensors(root, case)
    inputs, outputs, stages = {}, {}, {}
    for name, value in sorted(tensors.items()):
        if name.startswith(STAGE_PREFIX):
            stage = name[len(STAGE_PREFIX):]
            stages[stage] = _save(out, f"cases/{case['id']}/stages/{stage}.npy", value)
        else:
            group = inputs if name in INPUTS else outputs
            group[name] = _save(out, f"cases/{case['id']}/{name}.npy", value)
    rtol = {dtype: case_tolerance(case, default_tolerance(dtype), dtype).rtol
            for dtype in PROFILE_DTYPES}
    entry = {"id": case["id"], "method": case["method"], "clauses": list(case["clauses"]),
             "checkpoint": case["checkpoint"], "checkpoint_dir": checkpoint_path,
             "call_args": case["call_args"], "inputs": inputs, "outputs": outputs,
             "stages": stages, "rtol": rtol}
    if "exit_margin" in case:
        entry["exit_margin"] = case["exit_margin"]
    if case.get("tolerance"):
        entry["tolerance_reason"] = case["tolerance"]["reason"]
    return entry


def export_goldens(out: Path, *, force: bool = False, root: Path = GOLDENS_DIR) -> dict[str, Any]:
    """Write the goldens of ``root`` (GOLD-1) under ``out`` as ``.npy`` files and a manifest;
    return the manifest. ``ExportError`` (one line) when ``out`` cannot be used."""
    out, root = Path(out), Path(root)
    source = load_manifest(root)
    _prepare(out, force)
    checkpoints = {}
    for name, entry in source["checkpoints"].items():
        (out / entry["path"]).mkdir(parents=True, exist_ok=True)
        for file in CHECKPOINT_FILES:
            shutil.copyfile(root / entry["path"] / file, out / entry["path"] / file)
        checkpoints[name] = {"path": entry["path"], "kind": entry["kind"],
                             "files": list(CHECKPOINT_FILES)}
    cases = [_export_case(out, root, case, source["checkpoints"][case["checkpoint"]]["path"])
             for case in source["cases"] + source.get("anytime_cases", [])]
    written = [f"{c['path']}/{file}" for c in checkpoints.values() for file in c["files"]]
    written += [group[name]["file"] for case in cases
                for group in (case["inputs"], case["outputs"], case["stages"]) for name in group]
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "source": {"format": source["format"], "format_version": source["format_version"],
                   "generator": source["generator"]},
        "tolerance": {
            "rule": "TOL-1: max|actual - expected| / max(max|expected|, 1e-30) <= rtol, "
                    "one value per output array, computed in float64; integer outputs "
                    "(exit_depths, granularities) must be equal",
            "profiles": {dtype: default_tolerance(dtype).rtol for dtype in PROFILE_DTYPES}},
        "checkpoints": checkpoints,
        "cases": cases,
        "sha256": {file: sha256(out / file) for file in sorted(written)},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="conformance export-goldens", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", metavar="DIR", type=Path,
                        help="directory to write (created; must be empty unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty DIR, replacing files of the same names")
    args = parser.parse_args(argv)
    try:
        manifest = export_goldens(args.dir, force=args.force)
    except (ExportError, ValueError) as error:
        print(f"ERROR: conformance: export-goldens: {error}", file=sys.stderr)
        return 4
    print(f"wrote {len(manifest['cases'])} cases and {len(manifest['checkpoints'])} "
          f"checkpoints ({len(manifest['sha256'])} files) to {args.dir}")
    return 0
