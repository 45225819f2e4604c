"""Checking a report given to ``python -m conformance.repro`` before anything is rebuilt.

A report is input from elsewhere (a porter mails it, CI uploads it). ``read_failures``
reads it (a regular file of at most ``MAX_REPORT_BYTES``), parses it as JSON, validates it
against the shipped JSON Schema of the report format (``schemas/report.schema.json``,
format version 2, with ``jsonschema``), then checks every repro's references and sizes
before any checkpoint or image is made: golden ids and checkpoint names must exist;
configs must pass the oracle's own validation (``reference_numpy.default_config``:
LIM-1 sizes, LIM-2 tokens); the drawn checkpoint's weights and every call's images and
forward pass must fit this machine's memory (the oracle's LIM-3 estimate,
``reference_numpy.limits``). Every problem is one ``ReproInputError`` naming the field
(``failures[0].repro.scenario.config``) and what is allowed.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from . import callargs

SCHEMA_PATH = Path(__file__).parent / "schemas" / "report.schema.json"
MAX_REPORT_BYTES = 256 * 2**20  # a report of the whole thorough suite is a few MB
GIB = 2**30


class ReproInputError(ValueError):
    """A report or one of its repros cannot be re-run; the message names the field."""


def read_failures(path: Path, test: str | None) -> list[dict[str, Any]]:
    """The failures of the report at ``path`` (only ``test``'s when given) that carry a repro,
    each checked (``check_repro``)."""
    report = _validated(_read_json(path), path)
    chosen = [(i, f) for i, f in enumerate(report["failures"])
              if f["repro"] is not None and (test is None or f["id"] == test)]
    for i, failure in chosen:
        check_repro(failure["repro"], f"failures[{i}].repro")
    return [failure for _, failure in chosen]


def _read_json(path: Path) -> Any:
    try:
        info = path.stat()
    except OSError as error:
        raise ReproInputError(f"--report {path}: {error.strerror.lower()}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ReproInputError(f"--report {path}: not a regular file")
    if info.st_size > MAX_REPORT_BYTES:
        raise ReproInputError(f"--report {path}: {info.st_size} bytes, more than the "
                              f"{MAX_REPORT_BYTES} a report may have")
    try:
        with path.open("rb") as f:
            return json.loads(f.read(MAX_REPORT_BYTES + 1))
    except OSError as error:
        raise ReproInputError(f"--report {path}: {error.strerror.lower()}") from None
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError
        raise ReproInputError(f"--report {path}: not a JSON report ({error})") from None


@cache
def report_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _validated(data: Any, path: Path) -> dict[str, Any]:
    """``data`` checked against the report schema; the first error (by path) is raised."""
    try:
        import jsonschema
    except ImportError:
        raise ReproInputError("checking a report needs jsonschema: pip install jsonschema "
                              "(or the package's [conformance] / [test] extra)") from None
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(report_schema()).iter_errors(data))
    if error is not None:  # the most relevant error, descending into oneOf alternatives
        where = field_name(error.absolute_path) or "the report"
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        raise ReproInputError(f"--report {path}: {where}: {message}")
    return data


def field_name(parts: Any) -> str:
    """``failures[0].repro.call_args`` from a JSON path."""
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def check_repro(repro: Mapping[str, Any], where: str) -> None:
    """Check one (schema-valid) repro's references and sizes; ``ReproInputError`` naming the
    field of the first problem."""
    from .goldens import load_manifest

    manifest = load_manifest()
    if "golden" in repro and "check" not in repro:
        _golden_case(repro["golden"], f"{where}.golden", manifest)
        return
    if "check" not in repro and "config" in repro:
        config = _config(repro["kind"], repro["config"], f"{where}.config")
        _weights_fit(config, f"{where}.config")
        _call_fits(config, repro["image_shape"], repro["call_args"], where, "image_shape")
        return
    if "scenario" in repro:
        scenario = repro["scenario"]
        config = _config(scenario["kind"], scenario["config"], f"{where}.scenario.config")
        _weights_fit(config, f"{where}.scenario.config")
    elif "checkpoint" in repro:
        config = _checkpoint_config(repro["checkpoint"], f"{where}.checkpoint", manifest)
    else:
        return  # an oracle-free invariant's record: nothing is rebuilt (repro.rerun says so)
    calls = [(f"{where}.history[{i}]", call) for i, call in enumerate(repro.get("history") or [])]
    for name, call in [*calls, (where, repro)]:
        if "images" in call:
            shape = _images_shape(call["images"], f"{name}.images", manifest)
            _call_fits(config, shape, call.get("call_args", {}), name, "images")


def _golden_case(case_id: str, where: str, manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    for case in manifest["cases"]:
        if case["id"] == case_id:
            return case
    raise ReproInputError(f"{where}: unknown golden case {case_id!r} (the manifest has "
                          f"{len(manifest['cases'])}, e.g. {manifest['cases'][0]['id']!r})")


def _checkpoint_config(name: str, where: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    from .goldens import GOLDENS_DIR

    if name not in manifest["checkpoints"]:
        raise ReproInputError(f"{where}: unknown golden checkpoint {name!r} (known: "
                              f"{', '.join(sorted(manifest['checkpoints']))})")
    path = GOLDENS_DIR / manifest["checkpoints"][name]["path"] / "config.json"
    return json.loads(path.read_text())


def _config(kind: str, overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The oracle's validation of a drawn config (LIM-1, LIM-2 and every other rule)."""
    from reference_numpy import ConfigError, default_config

    try:
        return default_config(kind, **overrides)
    except ConfigError as error:
        raise ReproInputError(f"{where}: {'; '.join(error.problems)}") from None


def _parameters(config: Mapping[str, Any]) -> int:
    """Number of weights, without building the layout of every block: the oracle's layout
    (``expected_shapes``) of depths 1 and 2 gives the base and the per-block count."""
    from reference_numpy.checkpoint import expected_shapes

    one, two = (sum(int(np.prod(s, dtype=object)) for s in
                    expected_shapes({**config, "depth": d}).values()) for d in (1, 2))
    return one + (config["depth"] - 1) * (two - one)


def _available() -> int:
    from reference_numpy.limits import machine_memory

    return machine_memory() or 2**63


def _weights_fit(config: Mapping[str, Any], where: str) -> None:
    """The drawn checkpoint is made in float64 (``random_weights``): it must fit memory."""
    need = 8 * _parameters(config)
    if need > _available():
        raise ReproInputError(
            f"{where}: embed_dim={config['embed_dim']}, depth={config['depth']} makes "
            f"{need // 8} weights ({need / GIB:.3g} GiB in float64), more than the "
            f"{_available() / GIB:.3g} GiB of memory of this machine")


def _images_shape(ref: Mapping[str, Any], where: str,
                  manifest: Mapping[str, Any]) -> list[int]:
    if "golden" in ref:
        shape = list(_golden_case(ref["golden"], f"{where}.golden", manifest)["image_shape"])
    else:
        shape = list(ref["image_shape"])
    if "rows" in ref:
        start, stop = ref["rows"]
        if not start < stop <= shape[0]:
            raise ReproInputError(f"{where}.rows: [{start}, {stop}] is not a non-empty range of "
                                  f"the batch of {shape[0]}")
        shape[0] = stop - start
    return shape


def _call_fits(config: Mapping[str, Any], shape: list[int], call_args: Any, where: str,
               images_field: str) -> None:
    """The images (float64 while drawn) and one forward pass must fit memory (LIM-3)."""
    from reference_numpy.arguments import check_num_tokens
    from reference_numpy.limits import check_memory

    try:
        args = callargs.decode(call_args)
    except (TypeError, ValueError, OverflowError) as error:
        raise ReproInputError(f"{where}.call_args: {error}") from None
    need = 8 * int(np.prod(shape, dtype=object))
    if need > _available():
        raise ReproInputError(f"{where}.{images_field}: images of shape {tuple(shape)} need "
                              f"{need / GIB:.3g} GiB, more than the {_available() / GIB:.3g} "
                              "GiB of memory of this machine")
    try:  # an invalid num_tokens is the port's to reject (ARG-1): estimate with the default
        tokens = check_num_tokens(args.get("num_tokens"), config)
    except (TypeError, ValueError):
        tokens = config["max_latent_tokens"]
    try:
        check_memory(config, tuple(shape), tokens, _available())
    except ValueError as error:
        raise ReproInputError(f"{where}.{images_field}: {error}") from None
