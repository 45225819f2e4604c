"""Re-run a failure from a conformance report and print every stage's error.

    python -m conformance.repro --impl PACKAGE.MODULE:FACTORY --report report.json [--test ID]

A failure's ``repro`` in the report is either a golden case (``{"golden": id, ...}``)
or a drawn scenario of the property tests (``{"kind", "config", "weights_seed",
"image_shape", "image_seed", "call_args", ...}``, see ``conformance.strategies``).
Both are rebuilt exactly (same checkpoint, images and call) and compared with the
expected outputs; with a port exposing stages, every stage's TOL-1 error is listed
in forward order, so the first divergent one is the place to look. Repros of the
oracle-free invariants are re-run by selecting the test:
``python -m conformance --impl ... -- -k NAME``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .check import Checker, compare
from .goldens import GOLDENS_DIR, case_tensors, load_manifest, split_stages
from .protocol import PortAdapter, load_adapter
from .strategies import materialize
from .tolerances import default_tolerance
from .verify import Expected, check_call, kind_of, oracle_expected, stage_order


def rerun(port: PortAdapter, repro: Mapping[str, Any]) -> list[str]:
    """Rebuild and re-check one repro; return the lines to print."""
    with tempfile.TemporaryDirectory() as tmp:
        if "golden" in repro:
            manifest = load_manifest()
            case = next(c for c in manifest["cases"] if c["id"] == repro["golden"])
            directory = GOLDENS_DIR / manifest["checkpoints"][case["checkpoint"]]["path"]
            tensors = case_tensors(GOLDENS_DIR, case)
            images, args = tensors["images"], case["call_args"]
            expected = Expected(tensors["logits"], tensors["exit_depths"],
                                tensors.get("features"), lambda: split_stages(tensors))
        elif "kind" in repro and "config" in repro:
            directory, images = materialize(repro, Path(tmp))
            args = repro["call_args"]
            expected = oracle_expected(directory, images, args)
        else:
            return ["this repro comes from an oracle-free invariant: re-run its test with "
                    "`python -m conformance --impl ... -- -k <test name>`"]
        return _check(port, directory, images, args, expected)


def _check(port: PortAdapter, directory: Path, images, args: Mapping[str, Any],
           expected: Expected) -> list[str]:
    check = Checker(default_tolerance(port.capabilities.dtype))
    handle = port.load(str(directory))
    kind = kind_of(json.loads((directory / "config.json").read_text()))
    try:
        check_call(check, port, handle, kind, images, args, expected, clauses="repro",
                   what="port vs expected")
        lines = ["reproduced: PASSES now"]
    except AssertionError as error:
        lines = str(error).splitlines()
    if port.capabilities.stages and expected.stages is not None:
        actual, reference = port.stages(handle, images, **args), expected.stages()
        lines.append("stage errors (forward order):")
        for name in stage_order(reference):
            if name in actual:
                result = compare(name, actual[name], reference[name], check.tolerance.rtol)
                lines.append(f"  {result.describe()}")
            else:
                lines.append(f"  {name}: missing from the port's stages")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.repro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, metavar="PACKAGE.MODULE:FACTORY")
    parser.add_argument("--report", required=True, type=Path, help="JSON report of a run")
    parser.add_argument("--test", help="test id (default: every failure with a repro)")
    args = parser.parse_args(argv)
    failures = json.loads(args.report.read_text())["failures"]
    chosen = [f for f in failures if f["repro"] and (args.test is None or f["id"] == args.test)]
    if not chosen:
        print("no failure with a repro" + (f" for {args.test}" if args.test else ""))
        return 1
    port = load_adapter(args.impl)
    for failure in chosen:
        print(f"== {failure['id']}\n   repro: {json.dumps(failure['repro'])}")
        for line in rerun(port, failure["repro"]):
            print(f"   {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
