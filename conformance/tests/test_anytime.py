"""Family 5: the anytime grid (spec anytime.md, ANY-1..4), when the port declares it.

Goldens: the committed grid cases (manifest ``anytime_cases``), computed by the oracle.
Property: for drawn configs and calls, every entry of the port's grid equals the
oracle's single run it stands for (num_tokens = G[j], depth = l + 1), within TOL-1.
A port without ``capabilities.anytime`` skips with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.goldens import GOLDENS_DIR, case_tensors, load_manifest
from conformance.handles import final_example
from conformance.strategies import materialize, scenarios
from conformance.verify import (
    kind_of,
    locate_grid_entry,
    oracle_expected,
    worst_grid_entry,
)

from .support import read_config, require, scratch_dir

MANIFEST = load_manifest()


def _require_anytime(port) -> None:
    if not port.capabilities.anytime:
        pytest.skip("port has no anytime grid (capabilities.anytime)")


def _grid(port, handle: Any, images: np.ndarray, call_args: Mapping[str, Any]) -> dict:
    out = port.anytime(handle, images, **call_args)
    if not isinstance(out, Mapping) or "logits" not in out or "granularities" not in out:
        raise AssertionError("ANY-1: adapter.anytime must return a dict with 'logits' and "
                             f"'granularities', got {type(out).__name__}")
    return out


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case["id"], marks=pytest.mark.clauses("GOLD-1", "TOL-1",
                                                                *case["clauses"]))
    for case in MANIFEST.get("anytime_cases", [])])
def test_anytime_goldens(case, port, check):
    """GOLD-1, TOL-1, ANY-1: the port's grid reproduces a committed grid (every depth and
    granularity) within the tolerance; the case's clauses come from its manifest entry."""
    _require_anytime(port)
    directory = GOLDENS_DIR / MANIFEST["checkpoints"][case["checkpoint"]]["path"]
    config = read_config(directory)
    tensors = case_tensors(GOLDENS_DIR, case)
    images = tensors["images"]
    require(port, config, case["call_args"], images.shape[2:])
    check.start_case({"golden": case["id"], "checkpoint": case["checkpoint"],
                      "call_args": case["call_args"], "method": "anytime"})
    out = _grid(port, port.load(str(directory)), images, case["call_args"])
    check.exact("granularities", np.asarray(out["granularities"]), tensors["granularities"],
                clause="MASK-2")
    if not check.close("anytime.logits", out["logits"], tensors["logits"], clause="ANY-1").ok \
            and np.shape(out["logits"]) == tensors["logits"].shape:
        locate_grid_entry(check, port, {"checkpoint": case["checkpoint"]}, directory, images,
                          case["call_args"], config,
                          worst_grid_entry(out["logits"], tensors["logits"]),
                          tensors["granularities"].tolist())
    check.assert_ok(f"anytime golden {case['id']}")


@pytest.mark.clauses("ANY-1", "ANY-2", "ANY-3", "ANY-4", "MASK-2", "MAT-3", "TOL-1")
@given(data=st.data())
def test_anytime_entries_equal_single_runs(port, check, data):
    """ANY-1..4: every entry [b, l, j] of the port's grid equals the oracle's single run with
    num_tokens = G[j] and depth = l + 1 (same width and token_grans) within TOL-1, for both
    model kinds, one-pass and fallback configurations alike; G is MASK-2's list."""
    from reference_numpy.masks import granularities

    _require_anytime(port)
    kind = data.draw(st.sampled_from(sorted(port.capabilities.kinds)))
    scenario = data.draw(scenarios(port.capabilities, kind))
    args = {k: v for k, v in scenario["call_args"].items() if k != "depth"}
    scenario["call_args"] = args
    check.start_case({**scenario, "method": "anytime"})
    with scratch_dir() as tmp:
        directory, images = materialize(scenario, tmp)
        config = read_config(directory)
        require(port, config, args, images.shape[2:])
        out = _grid(port, port.load(str(directory)), images, args)
        N = args.get("num_tokens", config["max_latent_tokens"])
        grans = granularities(args.get("token_grans", config["mask_token_grans"]), N)
        check.exact("granularities", np.asarray(out["granularities"]), np.array(grans),
                    clause="MASK-2")
        logits = np.asarray(out["logits"])
        K = config["depth"]
        check.exact("anytime.shape", np.array(logits.shape),
                    np.array([images.shape[0], K, len(grans), config["num_classes"]]),
                    clause="ANY-1")
        if not check.failed:
            fixed = {k: v for k, v in args.items() if k != "num_tokens"}
            expected = np.empty(logits.shape)  # (B, K, G, C)
            for j, g in enumerate(grans):
                for depth in range(1, K + 1):
                    single = oracle_expected(directory, images,
                                             {**fixed, "num_tokens": g, "depth": depth})
                    expected[:, depth - 1, j] = single.logits[:, 0]
                    check.close("anytime.logits", logits[:, depth - 1, j], single.logits[:, 0],
                                clause="ANY-1",
                                where=f"depth {depth}, {g} latents ({kind_of(config)})")
            if check.failed and final_example():  # located once: the shrunk example
                locate_grid_entry(check, port, {"scenario": scenario}, directory, images, args,
                                  config, worst_grid_entry(logits, expected), grans)
    check.assert_ok("anytime grid entry vs single run", provisional=not final_example())
