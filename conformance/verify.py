"""Run one call on a port and check it against expected outputs (goldens or the oracle).

On a mismatch the failure is *located*, in this order:

1. State leak (STATE-1): the call passes on a fresh handle
   (``conformance.handles.check_on_shared_handle``).
2. Which argument: each argument group the call sets (``num_tokens``,
   ``token_grans``, ``mat_dim``, ``depth``, ``depth_tau``/``exit_policy``) is
   re-run alone, and the default call too, against the live oracle; when the
   default call passes, the failure belongs to the clauses of the argument
   groups that fail alone (``argument_clause``).
3. Which stage: when the port exposes stages, its stages are compared with the
   expected ones in forward order (``patches``, ``read``, ``block_0`` ..,
   ``write``); the first one out of tolerance is recorded, and when step 2 did
   not decide, names the clause (``stage_clause``). When the port's outputs then
   match the oracle computed with a known wrong constant (``conformance.faults``:
   LayerNorm eps 1e-5, tanh GELU), that constant's clause (NUM-1, NUM-2) is named
   instead. Without either, an accuracy failure stays on TOL-1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .check import Checker, compare
from .faults import KNOWN_FAULTS, KnownFault
from .protocol import PortAdapter

if TYPE_CHECKING:
    from .handles import Images, SharedHandle

# Clause of an accuracy check before it is located (TOL-1: within tolerance of the oracle).
UNLOCATED = "TOL-1"
# Argument groups re-run alone to locate a failure (depth_tau needs its exit_policy).
ARGUMENT_GROUPS = (("num_tokens",), ("token_grans",), ("mat_dim",), ("depth",),
                   ("depth_tau", "exit_policy"))


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


def exit_clause(call_args: Mapping[str, Any]) -> str:
    """EXIT-3 for the per-sample policy, EXIT-2 for the batch mean (default)."""
    return "EXIT-3" if call_args.get("exit_policy") == "per_sample" else "EXIT-2"


def argument_clause(group: tuple[str, ...], call_args: Mapping[str, Any],
                    config: Mapping[str, Any]) -> str:
    """The clause that defines what an argument group changes in the forward pass."""
    name = group[0]
    if name == "num_tokens":
        if call_args["num_tokens"] > config["max_latent_tokens"]:
            return "ROPE-3"
        masked = config["attn_layer"] == "flex" and config["block_mask"] in ("block", "causal")
        return "MASK-2" if masked else "LAT-1"
    if name == "token_grans":
        return "MASK-2"
    if name == "mat_dim":
        return "MAT-1" if np.ndim(call_args["mat_dim"]) == 0 else "MAT-3"
    if name == "depth":
        return "DEPTH-1"
    return exit_clause(call_args)


def stage_clause(stage: str, config: Mapping[str, Any], image_hw: tuple[int, int],
                 quantities: set[str]) -> str:
    """The clause that defines a stage (the first one to diverge)."""
    if stage == "patches":
        return "PATCH-1" if tuple(image_hw) == (config["img_size"],) * 2 else "PATCH-2"
    if stage == "read":
        return "READ-1"
    if stage.startswith("block_"):
        return "BLOCK-1"
    if stage == "write":
        return "WRITE-1"
    return "DIST-2" if quantities == {"features"} else "HEAD-1"


def latent_rule_candidates(stage: str, config: Mapping[str, Any]) -> list[str]:
    """Rules a stage's divergence points to when that stage is right with one latent (at
    position 0 RoPE rotates nothing, ROPE-1/2, and a mask has nothing to hide, MASK-1..5),
    most likely first; [] for stages where one latent proves nothing."""
    if stage == "read":
        return ["ROPE-1", "ROPE-2", "ROPE-4"]
    if not stage.startswith("block_"):
        return []
    if config["attn_layer"] == "full":
        masks = ["MASK-1"] if config["block_mask"] != "none" else []
    else:
        masks = [{"block": "MASK-3", "causal": "MASK-4", "none": "MASK-5"}[config["block_mask"]]]
    return [*masks, "ROPE-1", "ROPE-4", "BLOCK-1"]


def _stages_match(shared: SharedHandle, images: np.ndarray, call_args: Mapping[str, Any],
                  oracle_dir: Path, stage: str, rtol: float) -> bool:
    """The port's stages up to and including ``stage`` agree with the oracle's for this
    call on a fresh handle (False when the port raises)."""
    try:
        actual = shared.port.stages(shared.load(), images, **call_args)
    except Exception:
        return False
    expected = oracle_expected(oracle_dir, images, call_args).stages()
    order = stage_order(expected)
    upto = {name: expected[name] for name in order[:order.index(stage) + 1]} \
        if stage in order else expected
    return first_divergent_stage(actual, upto, rtol)["stage"] == "head"


def _matches_oracle(shared: SharedHandle, images: np.ndarray, call_args: Mapping[str, Any],
                    oracle_dir: Path, rtol: float) -> bool:
    """The call on a fresh handle agrees with the live oracle (or raises: False)."""
    try:
        out = run(shared.port, shared.load(), shared.kind, images, call_args)
    except Exception:
        return False
    expected = oracle_expected(oracle_dir, images, call_args)
    keys = [("logits", expected.logits), ("features", expected.features)]
    return all(compare(k, out.get(k), ref, rtol).ok for k, ref in keys if ref is not None)


def known_fault(shared: SharedHandle, images: np.ndarray, call_args: Mapping[str, Any],
                oracle_dir: Path | None, rtol: float) -> KnownFault | None:
    """The first of ``KNOWN_FAULTS`` whose oracle the call on a fresh handle matches (None:
    none, or no checkpoint for the oracle)."""
    if oracle_dir is None:
        return None
    for fault in KNOWN_FAULTS:
        with fault.in_oracle():
            if _matches_oracle(shared, images, call_args, oracle_dir, rtol):
                return fault
    return None


def locate_fault(check: Checker, shared: SharedHandle, images: np.ndarray,
                 call_args: Mapping[str, Any], expected: Expected, config: Mapping[str, Any],
                 oracle_dir: Path | None) -> None:
    """Steps 2 and 3 of the module docstring: set the failed accuracy checks' clause and
    the first divergent stage. Runs on fresh handles only."""
    rtol = check.tolerance.rtol
    port = shared.port
    if port.capabilities.stages and expected.stages is not None:
        try:
            actual = port.stages(shared.load(), images, **call_args)
            check.divergence = first_divergent_stage(actual, expected.stages(), rtol)
        except Exception as error:
            check.divergence = {"stage": "?", "detail": f"stages raised {type(error).__name__}: "
                                                        f"{error}"}
    clauses: list[str] = []
    groups = [g for g in ARGUMENT_GROUPS if g[0] in call_args]
    if groups and oracle_dir is not None and _matches_oracle(shared, images, {}, oracle_dir,
                                                             rtol):
        alone = {g: {k: call_args[k] for k in g if k in call_args} for g in groups}
        failing = [g for g in groups if not _matches_oracle(shared, images, alone[g],
                                                             oracle_dir, rtol)] or groups
        clauses = list(dict.fromkeys(argument_clause(g, call_args, config) for g in failing))
        how = (f"the default call matches the oracle; {', '.join('/'.join(g) for g in failing)}"
               " alone does not" if failing != groups or len(groups) == 1 else
               "the default call matches the oracle; only the combination fails")
    elif check.divergence and check.divergence["stage"] != "?":
        quantities = {c.quantity for c in check.failed if c.clause == UNLOCATED}
        stage = check.divergence["stage"]
        clauses = [stage_clause(stage, config, images.shape[2:], quantities)]
        how = f"first divergent stage {stage}"
        candidates = latent_rule_candidates(stage, config)
        if candidates and oracle_dir is not None and _stages_match(
                shared, images, {**call_args, "num_tokens": 1}, oracle_dir, stage, rtol):
            clauses = candidates[:1]
            how += (f", which matches the oracle with num_tokens=1 (one latent: no RoPE "
                    f"rotation, no mask): candidate rules in order {', '.join(candidates)}")
        fault = known_fault(shared, images, call_args, oracle_dir, rtol)
        if fault is not None:
            clauses = [fault.clause]
            how += (f"; the port's outputs match the oracle's computed with a known fault: "
                    f"{fault.description}")
    if clauses:
        check.reattribute(clauses, how, only=UNLOCATED)


def check_call(check: Checker, shared: SharedHandle, images: Images,
               call_args: Mapping[str, Any], expected: Expected, *, what: str,
               config: Mapping[str, Any], oracle_dir: Path | None) -> None:
    """Run the call on the shared handle, compare logits (+ features, exit depths) with
    ``expected`` and assert; a failure is located (module docstring). ``oracle_dir`` (the
    checkpoint, read by the oracle) enables step 2; None skips it."""
    from .handles import check_on_shared_handle

    def body(checker: Checker) -> None:
        try:
            out = shared.call(images, call_args)
        except Exception as error:
            checker.raised(error, clause=UNLOCATED)
            return
        checker.close("logits", out["logits"], expected.logits, clause=UNLOCATED)
        checker.argmax(out["logits"], expected.logits, clause=UNLOCATED)
        if expected.features is not None:
            checker.close("features", out.get("features"), expected.features, clause=UNLOCATED)
        if expected.exit_depths is not None and out.get("exit_depths") is not None:
            clause = exit_clause(call_args) if "depth_tau" in call_args else "DEPTH-1"
            checker.exact("exit_depths", out["exit_depths"], expected.exit_depths, clause=clause)

    check_on_shared_handle(check, shared, body, what, locate=lambda: locate_fault(
        check, shared, images.array, call_args, expected, config, oracle_dir))


def worst_grid_entry(actual: np.ndarray, expected: np.ndarray) -> tuple[int, int]:
    """(depth index k, granularity index j) of the anytime grid entry with the largest
    absolute error; grids are (B, K, G, C)."""
    diff = np.abs(np.asarray(actual, dtype=np.float64) - expected)  # (B, K, G, C)
    per_entry = np.where(np.isfinite(diff), diff, np.inf).max(axis=(0, 3))  # (K, G)
    k, j = np.unravel_index(int(np.argmax(per_entry)), per_entry.shape)
    return int(k), int(j)


def locate_grid_entry(check: Checker, port: PortAdapter, checkpoint: Mapping[str, Any],
                      directory: Path, images: np.ndarray, call_args: Mapping[str, Any],
                      config: Mapping[str, Any], entry: tuple[int, int],
                      granularities: list[int]) -> None:
    """Locate an anytime failure (ANY-1) by its worst entry ``(k, j)``: the single call with
    num_tokens = G[j] and depth = k + 1 is checked against the oracle like any call. When it
    fails too, the grid failure takes its located clause and first divergent stage; when it
    passes, the grid computation itself is at fault (ANY-3 one pass, ANY-4 otherwise)."""
    from reference_numpy.anytime import prefix_property_holds

    from .handles import SharedHandle

    k, j = entry  # depth index, granularity index
    single = {**{key: v for key, v in call_args.items() if key != "num_tokens"},
              "num_tokens": granularities[j], "depth": k + 1}
    where = f"worst entry depth {k + 1}, {granularities[j]} latents"
    shared = SharedHandle(port, checkpoint, directory, kind_of(config))
    expected = oracle_expected(directory, images, single)
    trial = Checker(check.tolerance)
    try:
        out = run(port, shared.load(), shared.kind, images, single)
        trial.close("logits", out["logits"], expected.logits, clause=UNLOCATED)
    except Exception as error:
        trial.raised(error, clause=UNLOCATED)
    if trial.failed:
        locate_fault(trial, shared, images, single, expected, config, directory)
        check.reattribute(trial.failed_clauses(), f"{where}: the single call {single} fails "
                          f"too ({trial.attribution or 'not located further'})", only="ANY-1")
        check.divergence = trial.divergence
        return
    N = call_args.get("num_tokens", config["max_latent_tokens"])
    clause = "ANY-3" if prefix_property_holds(config, N) else "ANY-4"
    check.reattribute(clause, f"{where}: the single call {single} matches the oracle, so the "
                      "grid computation differs", only="ANY-1")
