"""Run one call on a port and check it against expected outputs (goldens or the oracle).

On a mismatch, when the port exposes stages, the port's stages are compared
with the expected ones in forward order (``patches``, ``read``, ``block_0`` ..,
``write``) and the first one out of tolerance is recorded: that is where a
port's bug lives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .check import Checker, compare
from .protocol import PortAdapter


@dataclass
class Expected:
    """Reference outputs of one call; ``stages`` is computed only when needed."""

    logits: np.ndarray
    exit_depths: np.ndarray | None = None
    features: np.ndarray | None = None
    stages: Callable[[], Mapping[str, np.ndarray]] | None = None


def kind_of(config: Mapping[str, Any]) -> str:
    """``"distill"`` when the config has ``output_feat_dim``, else ``"classification"``."""
    return "distill" if "output_feat_dim" in config else "classification"


def oracle_expected(directory: Path, images: np.ndarray,
                    call_args: Mapping[str, Any]) -> Expected:
    """The oracle's outputs for the checkpoint in ``directory``, read as a port reads it."""
    from reference_numpy import load_checkpoint, trace

    config, weights = load_checkpoint(directory)
    result = trace(weights, config, images, **call_args)
    return Expected(result.logits, result.exit_depths, result.features, lambda: result.stages)


def run(port: PortAdapter, handle: Any, kind: str, images: np.ndarray,
        call_args: Mapping[str, Any]) -> Mapping[str, Any]:
    """``port.classify`` or ``port.distill`` by model kind; checks the result is a mapping."""
    method = port.distill if kind == "distill" else port.classify
    out = method(handle, images, **call_args)
    if not isinstance(out, Mapping) or "logits" not in out:
        raise AssertionError(f"OUT-1: adapter.{method.__name__} must return a dict with "
                             f"'logits', got {type(out).__name__}")
    return out


def stage_order(names: Mapping[str, Any]) -> list[str]:
    """Stage names in forward order: patches, read, block_0, block_1, ..., write."""
    blocks = sorted((n for n in names if re.fullmatch(r"block_\d+", n)),
                    key=lambda n: int(n.split("_")[1]))
    return [n for n in ("patches", "read") if n in names] + blocks + (
        ["write"] if "write" in names else [])


def first_divergent_stage(actual: Mapping[str, Any], expected: Mapping[str, np.ndarray],
                          rtol: float) -> dict[str, Any]:
    """The first expected stage the port misses or gets out of tolerance.

    Returns ``{"stage": name, "detail": text}``; ``stage`` is ``"head"`` when every
    stage matches (the divergence is in the output adapter).
    """
    for name in stage_order(expected):
        if name not in actual:
            return {"stage": name, "detail": "the port's stages lack it"}
        result = compare(name, actual[name], expected[name], rtol)
        if not result.ok:
            return {"stage": name, "detail": result.describe()}
    return {"stage": "head", "detail": "all stages within tolerance; the output adapter differs"}


def check_call(check: Checker, port: PortAdapter, handle: Any, kind: str, images: np.ndarray,
               call_args: Mapping[str, Any], expected: Expected, *, clauses: str,
               what: str) -> Mapping[str, Any]:
    """Run the call, compare logits (+ features, exit depths) and assert; returns the outputs."""
    out = run(port, handle, kind, images, call_args)
    check.close("logits", out["logits"], expected.logits)
    check.argmax(out["logits"], expected.logits)
    if expected.features is not None:
        check.close("features", out.get("features"), expected.features)
    if expected.exit_depths is not None and out.get("exit_depths") is not None:
        check.exact("exit_depths", out["exit_depths"], expected.exit_depths)
    if check.failed and port.capabilities.stages and expected.stages is not None:
        check.divergence = first_divergent_stage(port.stages(handle, images, **call_args),
                                                 expected.stages(), check.tolerance.rtol)
    check.assert_ok(clauses, what)
    return out
