"""Re-run failures from a conformance report and print where they diverge.

    python -m conformance.repro --impl PACKAGE.MODULE:FACTORY --report report.json [--test ID]

Every failure's ``repro`` in the report rebuilds the failing case exactly (same
checkpoint, images, call arguments with their exact Python / NumPy types, and
for state leaks the calls made before on the same handle). Kinds of repro:

``{"golden": id, ...}``
    a golden case, compared with its committed expected outputs.
``{"kind", "config", "weights_seed", "image_shape", "image_seed", "call_args", ...}``
    a drawn scenario of the property tests, compared with the oracle.
``{"check": "oracle", "checkpoint": name, "images": ref, "call_args"}``
    one call on a committed golden checkpoint, compared with the oracle.
``{"check": "fresh-handle", <checkpoint>, "history": [calls], "method", "images", "call_args"}``
    STATE-1: the call after replaying ``history`` on one handle vs the call on a
    fresh handle (port vs port).
``{"check": "batch-rows", <checkpoint>, "images", "method", "call_args", "row": b}``
    row b of the batched call vs the call on that image alone (port vs port).
``{"check": "prefix", <checkpoint>, "images", "call_args", "granularity": g}``
    MASK-6: the first g latents of every stage vs the run with N = g (port vs port).

``<checkpoint>`` is ``"checkpoint": name`` (a committed golden checkpoint) or
``"scenario": {kind, config, weights_seed, checkpoint_dtype}``; ``images`` is a
``conformance.handles.Images`` reference. With a port exposing stages every
stage's error is listed in forward order, so the first divergent one is the place
to look. Repros of other invariants (width nesting, depth truncation, early-exit
consistency) are re-run by selecting the test:
``python -m conformance --impl ... -- -k NAME``.

The report is checked first (``conformance.repro_input``: the report schema, known golden
ids and checkpoints, sizes within this machine's memory before anything is allocated);
a problem is one line ``ERROR: conformance.repro: <field>: ...`` and exit status 4, a
bad ``--impl`` the runner's line ``ERROR: conformance: ...``. The port runs in a worker
process with a time limit on every call (``--call-timeout``), as in the runner.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import callargs
from .check import compare
from .goldens import GOLDENS_DIR, case_tensors, load_manifest, split_stages
from .handles import Call, call_from_json, images_from_ref
from .isolation import DEFAULT_CALL_TIMEOUT, IsolatedPort
from .protocol import PortAdapter
from .repro_input import ReproInputError, read_failures
from .strategies import materialize
from .tolerances import default_tolerance
from .verify import Expected, kind_of, oracle_expected, run, stage_order


def _checkpoint_dir(repro: Mapping[str, Any], tmp: Path) -> Path:
    """The checkpoint a repro names: a committed golden checkpoint or a drawn scenario's."""
    if "scenario" in repro:
        from reference_numpy import default_config

        from .cases import write_checkpoint

        scenario = repro["scenario"]
        config = default_config(scenario["kind"], **scenario["config"])
        return write_checkpoint(tmp, config, scenario["weights_seed"],
                                dtype=scenario.get("checkpoint_dtype", "float32"))
    return GOLDENS_DIR / load_manifest()["checkpoints"][repro["checkpoint"]]["path"]


def _outcome(fn) -> Any:
    try:
        return fn()
    except Exception as error:
        return error


def _raised(error: BaseException) -> str:
    return f"the port raises {type(error).__name__}: {error}"


def _compare_outputs(actual: Any, expected: Mapping[str, Any], rtol: float,
                     label: str) -> list[str]:
    """Lines comparing two call outputs (a raised exception is reported as such)."""
    if isinstance(actual, BaseException):
        return [f"reproduced: {_raised(actual)}"]
    results = [compare(key, actual[key], np.asarray(expected[key]),
                       0.0 if key == "exit_depths" else rtol)
               for key in ("logits", "features", "exit_depths")
               if expected.get(key) is not None and actual.get(key) is not None]
    verdict = ("reproduced: PASSES now" if all(r.ok for r in results)
               else f"reproduced: FAILS ({label})")
    return [verdict, *[f"  {r.describe()}" for r in results]]


def _stage_lines(actual: Any, reference: Any, rtol: float, rows: slice = slice(None),
                 prefix: int | None = None) -> list[str]:
    """Every stage's error in forward order (``actual[rows]``, first ``prefix`` latents)."""
    if isinstance(actual, BaseException) or isinstance(reference, BaseException):
        bad = actual if isinstance(actual, BaseException) else reference
        return [f"stages: {_raised(bad)}"]
    lines = ["stage errors (forward order):"]
    for name in stage_order(reference):
        if name not in actual:
            lines.append(f"  {name}: missing from the port's stages")
            continue
        value = np.asarray(actual[name])[rows]
        if prefix is not None:
            if not (name == "read" or name.startswith("block_")):
                continue
            value = value[:, :prefix]
        lines.append(f"  {compare(name, value, np.asarray(reference[name]), rtol).describe()}")
    return lines


def rerun(port: PortAdapter, repro: Mapping[str, Any]) -> list[str]:
    """Rebuild and re-check one repro; return the lines to print."""
    rtol = default_tolerance(port.capabilities.dtype).rtol
    stages = port.capabilities.stages
    with tempfile.TemporaryDirectory() as tmp:
        check = repro.get("check")
        if check is None and "golden" in repro:
            manifest = load_manifest()
            case = next(c for c in manifest["cases"] if c["id"] == repro["golden"])
            directory = GOLDENS_DIR / manifest["checkpoints"][case["checkpoint"]]["path"]
            tensors = case_tensors(GOLDENS_DIR, case)
            images, args = tensors["images"], callargs.decode(case["call_args"])
            expected = Expected(tensors["logits"], tensors["exit_depths"],
                                tensors.get("features"), lambda: split_stages(tensors))
            return _against_expected(port, directory, images, args, expected, rtol)
        if check is None and "kind" in repro and "config" in repro:
            directory, images = materialize(repro, Path(tmp))
            args = callargs.decode(repro["call_args"])
            return _against_expected(port, directory, images, args,
                                     oracle_expected(directory, images, args), rtol)
        if check not in ("oracle", "fresh-handle", "batch-rows", "prefix"):
            return ["this repro comes from an oracle-free invariant without a replayable "
                    "form: re-run its test with `python -m conformance --impl ... -- -k "
                    "<test name>`"]
        directory = _checkpoint_dir(repro, Path(tmp))
        kind = kind_of(json.loads((directory / "config.json").read_text()))
        images = images_from_ref(repro["images"])
        args = callargs.decode(repro["call_args"])
        if check == "oracle":
            return _against_expected(port, directory, images, args,
                                     oracle_expected(directory, images, args), rtol)
        if check == "fresh-handle":
            used = port.load(str(directory))
            for entry in repro.get("history") or []:
                _outcome(lambda e=entry: call_from_json(e, kind).invoke(port, used))
            target = Call(kind, call_from_json(repro, kind).images, args,
                          stages=repro.get("method") == "stages")
            after = _outcome(lambda: target.invoke(port, used))
            fresh = _outcome(lambda: target.invoke(port, port.load(str(directory))))
            lines = [f"after replaying {len(repro.get('history') or [])} earlier call(s) on "
                     "one handle, vs a fresh handle:"]
            if isinstance(fresh, BaseException):
                return lines + [f"on a fresh handle {_raised(fresh)}"]
            lines += _compare_outputs(after, fresh, rtol, "STATE-1: differs from a fresh handle")
            if stages and not target.stages:
                used = port.load(str(directory))
                for entry in repro.get("history") or []:
                    _outcome(lambda e=entry: call_from_json(e, kind).invoke(port, used))
                lines += _stage_lines(
                    _outcome(lambda: port.stages(used, images, **args)),
                    _outcome(lambda: port.stages(port.load(str(directory)), images, **args)),
                    rtol)
            return lines
        handle = port.load(str(directory))
        if check == "batch-rows":
            b = repro["row"]
            row_args = {**args, **({"mat_dim": args["mat_dim"][b]}
                                   if np.ndim(args.get("mat_dim")) else {})}
            batched = _outcome(lambda: run(port, handle, kind, images, args))
            single = _outcome(lambda: run(port, handle, kind, images[b:b + 1], row_args))
            if isinstance(single, BaseException):
                return [f"alone, row {b}: {_raised(single)}"]
            if not isinstance(batched, BaseException):
                batched = {k: (np.asarray(v)[b:b + 1] if v is not None and k != "exit_depths"
                               else None) for k, v in batched.items()}
            lines = [f"row {b} of the batched call vs image {b} alone:"]
            lines += _compare_outputs(batched, single, rtol, "rows differ")
            if stages:
                lines += _stage_lines(_outcome(lambda: port.stages(handle, images, **args)),
                                      _outcome(lambda: port.stages(handle, images[b:b + 1],
                                                                   **row_args)),
                                      rtol, rows=slice(b, b + 1))
            return lines
        g = repro["granularity"]
        full = _outcome(lambda: port.stages(handle, images, **args))
        part = _outcome(lambda: port.stages(handle, images, **{**args, "num_tokens": g}))
        return [f"first {g} latents of the N={args.get('num_tokens')} run vs the N={g} run:",
                *_stage_lines(full, part, rtol, prefix=g)]


def _against_expected(port: PortAdapter, directory: Path, images: np.ndarray,
                      args: Mapping[str, Any], expected: Expected, rtol: float) -> list[str]:
    handle = port.load(str(directory))
    out = _outcome(lambda: run(port, handle, kind_of(json.loads(
        (directory / "config.json").read_text())), images, args))
    reference = {"logits": expected.logits, "features": expected.features,
                 "exit_depths": expected.exit_depths}
    lines = _compare_outputs(out, reference, rtol, "port vs expected")
    if port.capabilities.stages and expected.stages is not None:
        lines += _stage_lines(_outcome(lambda: port.stages(handle, images, **args)),
                              expected.stages(), rtol)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.repro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, metavar="PACKAGE.MODULE:FACTORY")
    parser.add_argument("--report", required=True, type=Path, help="JSON report of a run")
    parser.add_argument("--test", help="test id (default: every failure with a repro)")
    parser.add_argument("--call-timeout", type=float, default=DEFAULT_CALL_TIMEOUT,
                        metavar="SECONDS", help="time limit of every adapter call "
                        f"(default {DEFAULT_CALL_TIMEOUT:g}); the port runs in a worker process")
    args = parser.parse_args(argv)
    try:
        chosen = read_failures(args.report, args.test)
    except ReproInputError as error:
        print(f"ERROR: conformance.repro: {error}", file=sys.stderr)
        return 4
    if not chosen:
        print("no failure with a repro" + (f" for {args.test}" if args.test else ""))
        return 1
    try:
        port = IsolatedPort(args.impl, args.call_timeout)
    except ValueError as error:  # AdapterError, a bad --call-timeout: the runner's one line
        print(f"ERROR: conformance: {error}", file=sys.stderr)
        return 4
    try:
        for failure in chosen:
            print(f"== {failure['id']} [{', '.join(failure['clauses'])}]\n"
                  f"   repro: {json.dumps(failure['repro'])}")
            try:
                lines = rerun(port, failure["repro"])
            except Exception as error:  # the port failed outside a compared call (load)
                lines = [f"not re-run: {type(error).__name__}: {str(error).splitlines()[0]}"]
            for line in lines:
                print(f"   {line}")
    finally:
        port.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
