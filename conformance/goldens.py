"""Golden vectors (spec GOLD-1): generate, check and read; record published-checkpoint goldens.

Usage::

    python -m conformance.goldens generate [--out DIR]  # rewrite conformance/goldens/
    python -m conformance.goldens check                 # regenerate, compare with committed
    python -m conformance.goldens record --model pjajal/adaperceiver-v1-in1k-ft [--out FILE]

Layout of a goldens directory (GOLD-1, ``spec/goldens.md``)::

    manifest.json                         checkpoints and cases, see below
    checkpoints/<name>/config.json        tiny checkpoints in the published layout (CKPT-1..3)
    checkpoints/<name>/model.safetensors
    cases/<case id>.safetensors           images, expected outputs and stages
    cases/grid-*.safetensors              anytime grids (manifest "anytime_cases")

Every expected value is computed by the float64 oracle ``reference_numpy``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from . import exits
from .adapters import project_version
from .cases import ANYTIME_CASES, GOLDEN_CASES, MODELS, Case, make_images
from .tolerances import RTOL, Tolerance, errors

GOLDENS_DIR = Path(__file__).parent / "goldens"
FORMAT = "adaperceiver-conformance-goldens"
FORMAT_VERSION = 1
STAGE_PREFIX = "stages."


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading


def load_manifest(root: Path = GOLDENS_DIR) -> dict[str, Any]:
    """The parsed ``manifest.json``; ``ValueError`` for another format or version."""
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{root}/manifest.json is not {FORMAT} version {FORMAT_VERSION}")
    return manifest


def case_tensors(root: Path, case: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The tensors of one manifest case (``images``, ``logits``, ``stages.*``, ...)."""
    return load_file(Path(root) / case["file"])


def case_tolerance(case: Mapping[str, Any], default: Tolerance, dtype: str) -> Tolerance:
    """TOL-1 overrides: a case's manifest ``tolerance`` for this dtype (with its reason)
    replaces the table value; a port's own override (``default`` not from the table) wins."""
    override = case.get("tolerance")
    if not override or dtype not in override["rtol"] or not default.source.startswith("TOL-1"):
        return default
    return Tolerance(float(override["rtol"][dtype]), f"case override: {override['reason']}")


def split_stages(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"patches": ..., "block_0": ...}`` from the ``stages.*`` tensors of a case file."""
    return {k[len(STAGE_PREFIX):]: v for k, v in tensors.items() if k.startswith(STAGE_PREFIX)}


# ---------------------------------------------------------------------------- generation


def _resolve_tau(case: Case, config: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                 images: np.ndarray) -> tuple[dict[str, Any], float | None]:
    """Replace ``depth_tau="mid"`` by a well-separated threshold; return (call args, margin).

    Fixed thresholds are checked to lie at least ``exits.MIN_MARGIN`` from every
    confidence so that a float32 port exits at the same depths as the oracle.
    """
    from reference_numpy import classify

    args = dict(case.call_args)
    if args.get("depth_tau") is None:
        return args, None
    fixed = {k: v for k, v in args.items() if k not in ("depth_tau", "exit_policy")}
    conf = exits.confidence_table(
        lambda d: classify(weights, config, images, depth=d, **fixed), config["depth"])
    policy = args.get("exit_policy", "batch_mean")
    if args["depth_tau"] == "mid":
        tau = exits.mid_tau(conf, policy, min_margin=2 * exits.MIN_MARGIN)
        if tau is None:
            raise RuntimeError(f"golden {case.id}: no confidence gap wide enough for a threshold")
        args["depth_tau"] = round(tau, 4)
    margin = exits.margin(conf, policy, args["depth_tau"])
    if margin < exits.MIN_MARGIN:
        raise RuntimeError(f"golden {case.id}: depth_tau {args['depth_tau']} is {margin:.2g} "
                           "from a confidence; pick another threshold or seed")
    return args, margin


def _generate_case(root: Path, case: Case, config: Mapping[str, Any],
                   weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    from reference_numpy import trace

    images = make_images(case.image_shape, case.image_seed)
    args, margin = _resolve_tau(case, config, weights, images)
    result = trace(weights, config, images, **args)
    tensors = {"images": images, "logits": result.logits, "exit_depths": result.exit_depths}
    if result.features is not None:
        tensors["features"] = result.features
    tensors.update({STAGE_PREFIX + name: value for name, value in result.stages.items()})
    file = f"cases/{case.id}.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(root / file))
    return {
        "id": case.id,
        "checkpoint": case.model,
        "method": "distill" if "output_feat_dim" in config else "classify",
        "file": file,
        "call_args": args,
        "image_shape": list(case.image_shape),
        "clauses": list(case.clauses),
        "exit_margin": margin,
        **({"tolerance": dict(case.tolerance)} if case.tolerance else {}),
    }


def _generate_anytime_case(root: Path, case: Case, config: Mapping[str, Any],
                           weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """An anytime-grid case (ANY-1): images, the oracle's grid ``logits`` (B, K, G, C) and
    its ``granularities`` (G,)."""
    from reference_numpy import anytime

    images = make_images(case.image_shape, case.image_seed)
    grid = anytime(weights, config, images, **case.call_args)
    file = f"cases/{case.id}.safetensors"
    save_file({"images": images, "logits": np.ascontiguousarray(grid.logits),
               "granularities": np.array(grid.granularities, dtype=np.int64)},
              str(root / file))
    return {"id": case.id, "checkpoint": case.model, "method": "anytime", "file": file,
            "call_args": dict(case.call_args), "image_shape": list(case.image_shape),
            "clauses": list(case.clauses)}


def generate(root: Path = GOLDENS_DIR) -> dict[str, Any]:
    """Write checkpoints, case files and ``manifest.json`` under ``root``; return the manifest."""
    from reference_numpy import load_checkpoint

    root = Path(root)
    (root / "cases").mkdir(parents=True, exist_ok=True)
    checkpoints, cases, anytime_cases = {}, [], []
    for recipe in MODELS.values():
        directory = recipe.write(root / "checkpoints" / recipe.name)
        config, weights = load_checkpoint(directory)  # float32-rounded, as a port sees them
        checkpoints[recipe.name] = {
            "path": f"checkpoints/{recipe.name}",
            "kind": recipe.kind,
            "weights_seed": recipe.seed,
            "sha256": {name: sha256(directory / name)
                       for name in ("config.json", "model.safetensors")},
        }
        cases += [_generate_case(root, case, config, weights)
                  for case in GOLDEN_CASES if case.model == recipe.name]
        anytime_cases += [_generate_anytime_case(root, case, config, weights)
                          for case in ANYTIME_CASES if case.model == recipe.name]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": {"adaperceiver-reference": project_version(), "numpy": np.__version__},
        "checkpoints": checkpoints,
        "cases": cases,
        "anytime_cases": anytime_cases,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# ------------------------------------------------------------------------------- check


def compare_goldens(committed: Path, fresh: Path, rtol: float = RTOL["float64"]) -> list[str]:
    """Differences between two goldens directories (empty when they agree).

    Manifests must be equal apart from ``generator``; checkpoint configs equal;
    every tensor present in both with equal shape, dtype and a TOL-1 float64
    relative error <= ``rtol``.
    """
    problems = []
    old, new = load_manifest(committed), load_manifest(fresh)
    for key in sorted((set(old) | set(new)) - {"generator", "checkpoints"}):
        if old.get(key) != new.get(key):
            problems.append(f"manifest.json: {key!r} differs")
    recipes = {name: {k: v for k, v in entry.items() if k != "sha256"}
               for name, entry in new["checkpoints"].items()}
    if recipes != {name: {k: v for k, v in entry.items() if k != "sha256"}
                   for name, entry in old["checkpoints"].items()}:
        problems.append("manifest.json: 'checkpoints' differ")
    files = [f"{c['path']}/model.safetensors" for c in new["checkpoints"].values()]
    files += [c["file"] for c in new["cases"] + new.get("anytime_cases", [])]
    for entry in new["checkpoints"].values():
        if json.loads((committed / entry["path"] / "config.json").read_text()) != json.loads(
                (fresh / entry["path"] / "config.json").read_text()):
            problems.append(f"{entry['path']}/config.json differs")
    for file in files:
        if not (committed / file).exists():
            problems.append(f"{file}: missing from the committed goldens")
            continue
        a, b = load_file(committed / file), load_file(fresh / file)
        if a.keys() != b.keys():
            problems.append(f"{file}: tensors {sorted(a.keys() ^ b.keys())} in only one copy")
        for key in sorted(a.keys() & b.keys()):
            if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
                problems.append(f"{file}:{key}: {a[key].dtype}{a[key].shape} vs "
                                f"{b[key].dtype}{b[key].shape}")
                continue
            max_abs, max_rel = errors(b[key], a[key])
            if max_rel > rtol:
                problems.append(f"{file}:{key}: max_rel {max_rel:.3g} > {rtol:g}")
    return problems


def check(root: Path = GOLDENS_DIR) -> list[str]:
    """Regenerate into a temporary directory and compare with ``root``."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return compare_goldens(Path(root), Path(tmp))


# ---------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.goldens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="rewrite the goldens from the oracle")
    gen.add_argument("--out", type=Path, default=GOLDENS_DIR)
    chk = sub.add_parser("check", help="verify that regeneration reproduces the committed goldens")
    chk.add_argument("--dir", type=Path, default=GOLDENS_DIR)
    rec = sub.add_parser("record", help="record a golden of a published checkpoint")
    rec.add_argument("--model", required=True,
                     help="hub id (pjajal/adaperceiver-v1-in1k-ft) or local checkpoint dir")
    rec.add_argument("--out", type=Path, default=None,
                     help="output file (default conformance/goldens/published/<name>.safetensors)")
    args = parser.parse_args(argv)
    if args.command == "generate":
        manifest = generate(args.out)
        print(f"wrote {len(manifest['cases'])} cases, {len(manifest['checkpoints'])} "
              f"checkpoints to {args.out}")
        return 0
    if args.command == "check":
        problems = check(args.dir)
        for line in problems:
            print(line, file=sys.stderr)
        print("goldens reproduce" if not problems else f"{len(problems)} difference(s)")
        return 1 if problems else 0
    from .published import record

    path = record(args.model, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
