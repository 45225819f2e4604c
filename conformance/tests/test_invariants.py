"""Family 3: invariants that need no oracle: the port is compared with itself.

Checkpoints are the committed golden ones (GOLD-1), or edited copies of them:
perturbing weights a call must not read (FFN units beyond the width, blocks
beyond the depth) must leave its output unchanged.

Every test runs on the shared handle of its checkpoint (``handles``), in the
run's seeded random order together with the goldens, through
``check_on_shared_handle``: a failure that disappears when every call gets a
fresh handle is a state leak and is reported as STATE-1 with a replayable
history. Each check names its own clause and compares port vs port
(``versus="port"``, the *invariant* errors of the report). Random data is drawn
before the checked body, which may run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import callargs, exits
from conformance.cases import write_checkpoint
from conformance.check import Checker
from conformance.handles import Images, SharedHandle, check_on_shared_handle, locate_leak
from conformance.verify import exit_clause, first_divergent_stage, kind_of, run, stage_order

from .support import read_config, require, require_stages, scratch_dir

Weights = dict[str, np.ndarray]


def _images(config: Mapping[str, Any], seed: int, batch: int = 3) -> Images:
    return Images.seeded((batch, config["in_channels"], config["img_size"], config["img_size"]),
                         seed)


def _load(port, handles, name: str, call_args: Mapping[str, Any] | None = None):
    """(shared handle, config) of a golden checkpoint; skips unsupported configs."""
    shared = handles.shared(name)
    config = read_config(shared.directory)
    require(port, config, call_args or {}, (config["img_size"],) * 2)
    return shared, config


def _stage_divergence(port, a: tuple[Any, Images, Mapping], b: tuple[Any, Images, Mapping],
                      rows: slice, rtol: float) -> dict[str, Any] | None:
    """First stage where ``stages(*a)[rows]`` and ``stages(*b)`` differ (port vs port);
    None when the port exposes no stages or a call raises."""
    if not port.capabilities.stages:
        return None
    try:
        left = port.stages(a[0], a[1].array, **a[2])
        right = port.stages(b[0], b[1].array, **b[2])
    except Exception:
        return None
    found = first_divergent_stage({k: v[rows] for k, v in left.items()}, right, rtol)
    return {**found, "versus": "the other side of the invariant"}


def _edited_copy(source: Path, target: Path, edit: Callable[[Weights, Mapping], None]) -> Path:
    """Copy a checkpoint with ``edit(weights, config)`` applied (float32 round trip is exact)."""
    from reference_numpy import load_checkpoint, save_checkpoint

    config, weights = load_checkpoint(source)
    weights = {k: v.copy() for k, v in weights.items()}
    edit(weights, config)
    return save_checkpoint(target, config, weights, dtype="float32")


def effective_grans(grans: Sequence[int], num_tokens: int) -> list[int]:
    """MASK-2: granularities <= N, then N appended when it exceeds the last kept one."""
    kept = [g for g in grans if g <= num_tokens]
    return kept + [num_tokens] if not kept or kept[-1] < num_tokens else kept


@pytest.mark.clauses("MASK-6", "MASK-3", "MASK-4", "MASK-2")
@pytest.mark.parametrize("model", ["cls-flex-block", "cls-flex-causal"])
@given(data=st.data())
def test_prefix_property(port, handles, check, data, model):
    """MASK-6: for N <= max_latent_tokens with flex attention and a block (MASK-3) or causal
    (MASK-4) mask, the first g latents after the read and after every block equal the run with
    N = g, for each granularity g of the run (MASK-2)."""
    require_stages(port)
    shared, config = _load(port, handles, model)
    N = data.draw(st.integers(1, config["max_latent_tokens"]), label="num_tokens")
    args = {"num_tokens": N}
    if data.draw(st.booleans(), label="custom token_grans"):
        args["token_grans"] = sorted(data.draw(st.sets(st.integers(1, N), min_size=1,
                                                       max_size=3)))
    grans = effective_grans(args.get("token_grans", config["mask_token_grans"]), N)
    # MASK-6 for every granularity, in a drawn order (a stateful port must not get an
    # ascending sequence it happens to survive)
    order = data.draw(st.permutations(grans[:-1]), label="granularity order")
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    check.start_case({"check": "prefix", **shared.checkpoint, "images": dict(images.ref),
                      "call_args": callargs.encode(args), "granularities": grans})
    first_bad: list[tuple[int, str]] = []

    def body(checker: Checker) -> None:
        full = shared.call(images, args, stages=True)
        for g in order:
            prefix = shared.call(images, {**args, "num_tokens": g}, stages=True)
            for name in stage_order(full):
                if name == "read" or name.startswith("block_"):
                    result = checker.close("latents", full[name][:, :g], prefix[name],
                                           clause="MASK-6", where=f"{name}[:, :{g}]",
                                           versus="port")
                    if not result.ok and not first_bad:
                        first_bad.append((g, name))

    def locate() -> None:
        g, name = first_bad[0] if first_bad else (None, None)
        if g is not None:
            check.repro = {**check.repro, "granularity": g}
            detail = next(c.describe() for c in check.failed if c.where.startswith(name))
            check.divergence = {"stage": name, "detail": detail,
                                "versus": f"the N={g} run (first g latents)"}

    check_on_shared_handle(check, shared, body, f"first g latents of the N={N} run vs the "
                                                "N=g run", locate=locate)


def _perturb_ffn_beyond(hidden: int) -> Callable[[Weights, Mapping], None]:
    """Randomise every processing block's FFN hidden units >= ``hidden`` (MAT-1)."""
    def edit(weights: Weights, config: Mapping) -> None:
        rng = np.random.default_rng(hidden)
        for i in range(config["depth"]):
            for key, index in ((f"blocks.{i}.ffn.fc1.weight", np.s_[hidden:]),
                               (f"blocks.{i}.ffn.fc1.bias", np.s_[hidden:]),
                               (f"blocks.{i}.ffn.fc2.weight", np.s_[:, hidden:])):
                part = weights[key][index]
                weights[key][index] = rng.standard_normal(part.shape)
    return edit


@pytest.mark.clauses("MAT-1", "MAT-2")
@given(data=st.data())
def test_width_nesting(port, handles, check, data):
    """MAT-1, MAT-2: at width m the output depends only on the first h = int(m * ffn_ratio)
    hidden units of each block FFN: randomising units >= h leaves it unchanged."""
    shared, config = _load(port, handles, "cls-flex-block")
    m = data.draw(st.integers(1, config["embed_dim"] - 1), label="mat_dim")
    hidden = int(m * config["ffn_ratio"])
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    check.start_case({"checkpoint": "cls-flex-block", "images": dict(images.ref),
                      "call_args": {"mat_dim": m},
                      "perturbed": f"FFN hidden units >= {hidden}"})
    with scratch_dir() as tmp:
        edited = port.load(str(_edited_copy(shared.directory, tmp, _perturb_ffn_beyond(hidden))))

        def body(checker: Checker) -> None:
            original = shared.call(images, {"mat_dim": m})
            perturbed = run(port, edited, "classification", images.array, {"mat_dim": m})
            checker.close("logits", perturbed["logits"], original["logits"], clause="MAT-1",
                          versus="port")

        def locate() -> None:
            check.divergence = _stage_divergence(port, (edited, images, {"mat_dim": m}),
                                                 (shared.load(), images, {"mat_dim": m}),
                                                 slice(None), check.tolerance.rtol)

        check_on_shared_handle(check, shared, body, f"width {m} output after perturbing FFN "
                                                    f"units >= {hidden}", locate=locate)


@pytest.mark.clauses("MAT-3", "MAT-4")
@given(data=st.data())
def test_per_sample_width_and_full_width(port, handles, check, data):
    """MAT-3: with a per-sample mat_dim list each row equals the scalar-width run of that row.
    MAT-4: mat_dim=None equals mat_dim=embed_dim."""
    shared, config = _load(port, handles, "cls-flex-block")
    D = config["embed_dim"]
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    widths = data.draw(st.lists(st.integers(1, D), min_size=3, max_size=3), label="widths")
    check.start_case({"checkpoint": "cls-flex-block", "images": dict(images.ref),
                      "call_args": {"mat_dim": widths}})

    def body(checker: Checker) -> None:
        full = shared.call(images, {})["logits"]
        checker.close("logits", shared.call(images, {"mat_dim": D})["logits"], full,
                      clause="MAT-4", where="mat_dim=embed_dim vs None", versus="port")
        if port.capabilities.per_sample_width:
            mixed = shared.call(images, {"mat_dim": widths})["logits"]
            for b, m in enumerate(widths):
                scalar = shared.call(images, {"mat_dim": m})["logits"]
                checker.close("logits", mixed[b], scalar[b], clause="MAT-3",
                              where=f"row {b} (mat_dim {m})", versus="port")

    def locate() -> None:
        bad = next((c for c in check.failed if c.clause == "MAT-3"), None)
        if bad is not None:
            b = int(bad.where.split()[1])
            check.divergence = _stage_divergence(
                port, (shared.load(), images, {"mat_dim": widths}),
                (shared.load(), images.rows(b, b + 1), {"mat_dim": widths[b]}),
                slice(b, b + 1), check.tolerance.rtol)

    check_on_shared_handle(check, shared, body, "per-sample / full width vs scalar width",
                           locate=locate)


def _perturb_blocks_from(first: int) -> Callable[[Weights, Mapping], None]:
    """Randomise every parameter of blocks ``first`` .. depth-1 (DEPTH-1)."""
    def edit(weights: Weights, config: Mapping) -> None:
        rng = np.random.default_rng(first)
        for key in weights:
            if key.startswith("blocks.") and int(key.split(".")[1]) >= first:
                weights[key] = rng.standard_normal(weights[key].shape)
    return edit


@pytest.mark.clauses("DEPTH-1")
@given(data=st.data())
def test_depth_truncation(port, handles, check, data):
    """DEPTH-1: depth d runs blocks 0..d-1 only: randomising blocks >= d leaves the output
    unchanged; depth = config depth equals depth None."""
    shared, config = _load(port, handles, "cls-flex-block")
    d = data.draw(st.integers(1, config["depth"] - 1), label="depth")
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    check.start_case({"checkpoint": "cls-flex-block", "images": dict(images.ref),
                      "call_args": {"depth": d}, "perturbed": f"blocks >= {d}"})
    with scratch_dir() as tmp:
        edited = port.load(str(_edited_copy(shared.directory, tmp, _perturb_blocks_from(d))))

        def body(checker: Checker) -> None:
            checker.close("logits",
                          run(port, edited, "classification", images.array,
                              {"depth": d})["logits"],
                          shared.call(images, {"depth": d})["logits"], clause="DEPTH-1",
                          versus="port")
            checker.close("logits", shared.call(images, {"depth": config["depth"]})["logits"],
                          shared.call(images, {})["logits"], clause="DEPTH-1",
                          where="depth=config depth vs None", versus="port")

        check_on_shared_handle(check, shared, body,
                               f"depth {d} output after perturbing later blocks")


@pytest.mark.clauses("EXIT-1", "EXIT-2", "EXIT-3", "EXIT-4")
@pytest.mark.parametrize("model", ["cls-flex-block", "cls-odd"])
@given(data=st.data())
def test_early_exit_consistency(port, handles, check, data, model):
    """EXIT-1..4 on the port alone: from the port's own fixed-depth confidences (EXIT-1) the
    exit depths follow the policy (EXIT-2 batch mean, EXIT-3 per sample), and every row's
    logits equal the fixed-depth logits at its exit depth (EXIT-4)."""
    if not port.capabilities.exit_policies:
        pytest.skip("port has no confidence early exit (capabilities.exit_policies)")
    shared, config = _load(port, handles, model)
    policy = data.draw(st.sampled_from(sorted(port.capabilities.exit_policies)), label="policy")
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    pick = data.draw(st.integers(0, 2**16), label="threshold choice")
    # Skip before the fixed-depth runs when the port cannot report exit depths (EXIT-4).
    probe = shared.call(images, {"depth_tau": 0.0, "exit_policy": policy})
    if probe.get("exit_depths") is None:
        pytest.skip("port returns no exit_depths (the protocol allows omitting them)")
    check.start_case({"checkpoint": model, "images": dict(images.ref),
                      "call_args": {"exit_policy": policy}})

    def body(checker: Checker) -> None:
        fixed = {d: shared.call(images, {"depth": d})["logits"]
                 for d in range(1, config["depth"] + 1)}
        conf = exits.confidence_table(fixed.__getitem__, config["depth"])
        taus = [0.0] + [tau for tau, _ in exits.separated_taus(conf, policy)]
        args = {"depth_tau": taus[pick % len(taus)], "exit_policy": policy}
        check.repro = {**check.repro, "call_args": args}
        out = shared.call(images, args)
        expected = exits.exit_depths(conf, args["depth_tau"], policy)
        checker.exact("exit_depths", out["exit_depths"], expected, clause=exit_clause(args),
                      versus="port")
        for b, d in enumerate(expected):
            checker.close("logits", out["logits"][b], fixed[int(d)][b], clause="EXIT-4",
                          where=f"row {b} (exit depth {d})", versus="port")

    check_on_shared_handle(check, shared, body, "early exit vs fixed-depth runs of the same port")


@pytest.mark.clauses("STATE-1", "MASK-2", "MASK-3")
def test_stateless_after_other_granularities(port, check, tmp_path):
    """STATE-1: a call's result does not depend on earlier calls on the same handle. Upstream
    caches the last mask: with grans [8, 16, 32], running N=20 and then N=32 masks the second
    call with [8, 16, 20, 32]; it must equal N=32 on a fresh handle."""
    from reference_numpy import default_config

    overrides = {"embed_dim": 16, "num_heads": 2, "depth": 2, "max_latent_tokens": 32,
                 "mask_token_grans": [8, 16, 32], "mat_dims": [16], "img_size": 8,
                 "patch_size": 4, "num_classes": 5, "attn_layer": "flex", "block_mask": "block"}
    config = default_config("classification", **overrides)
    require(port, config, {}, (8, 8))
    directory = write_checkpoint(tmp_path, config, seed=0)
    scenario = {"kind": "classification", "config": overrides, "weights_seed": 0,
                "checkpoint_dtype": "float32"}
    used = SharedHandle(port, {"scenario": scenario}, directory, "classification")
    images = Images.seeded((2, 3, 8, 8), 0)
    check.start_case({"check": "fresh-handle", "scenario": scenario,
                      "history": [{"method": "classify", "images": dict(images.ref),
                                   "call_args": {"num_tokens": 20}}],
                      "method": "classify", "images": dict(images.ref),
                      "call_args": {"num_tokens": 32}})
    used.call(images, {"num_tokens": 20})
    after = used.call(images, {"num_tokens": 32})["logits"]
    fresh = run(port, used.load(), "classification", images.array, {"num_tokens": 32})["logits"]
    check.close("logits", after, fresh, clause="STATE-1", versus="port")
    if check.failed:
        check.divergence = locate_leak(used, 1, check.tolerance.rtol)["divergence"]
    check.assert_ok("N=32 after an N=20 call on the same handle vs a fresh handle")


@pytest.mark.clauses("STATE-1")
@given(data=st.data())
def test_stateless_interleaved_calls(port, handles, check, data):
    """STATE-1: interleaving calls with different arguments on one handle gives, for each
    call, the result of the same call on a fresh handle."""
    shared, config = _load(port, handles, "cls-flex-block")
    L, D = config["max_latent_tokens"], config["embed_dim"]
    calls = data.draw(st.lists(st.fixed_dictionaries({}, optional={
        "num_tokens": st.integers(1, 2 * L), "mat_dim": st.integers(1, D),
        "depth": st.integers(1, config["depth"]),
        "token_grans": st.sets(st.integers(1, L), min_size=1, max_size=3).map(sorted)}),
        min_size=2, max_size=4), label="calls")
    images = _images(config, 0)
    check.start_case({"checkpoint": "cls-flex-block", "images": dict(images.ref),
                      "calls": calls})
    for i, args in enumerate(calls):
        index = len(shared.history)
        out = shared.call(images, args)["logits"]
        fresh = run(port, shared.load(), "classification", images.array, args)["logits"]
        if not check.close("logits", out, fresh, clause="STATE-1", where=f"call {i}",
                           versus="port").ok:
            if check.first_failure is None:  # not yet located (Hypothesis replays failures)
                found = locate_leak(shared, index, check.tolerance.rtol)
                check.repro = {**found["repro"], "test_case": check.repro}
                check.divergence = found["divergence"]
            break
    check.assert_ok("calls on a shared handle vs fresh handles")


@pytest.mark.clauses("STATE-1", "EXIT-3", "OUT-1")
@pytest.mark.parametrize("model", ["cls-flex-block", "distill-flex-block"])
@given(data=st.data())
def test_batching_equivalence(port, handles, check, data, model):
    """STATE-1, EXIT-3, MAT-3: without the batch-mean exit (the one batch-coupled rule, EXIT-2)
    each row of a batched call equals the call on that image alone (a per-sample mat_dim list
    becomes that row's scalar width)."""
    shared, config = _load(port, handles, model)
    kind = kind_of(config)
    args: dict[str, Any] = {}
    if data.draw(st.booleans(), label="num_tokens given"):
        args["num_tokens"] = data.draw(st.integers(1, 2 * config["max_latent_tokens"]))
    if port.capabilities.per_sample_width and data.draw(st.booleans(), label="widths given"):
        args["mat_dim"] = data.draw(st.lists(st.integers(1, config["embed_dim"]), min_size=3,
                                             max_size=3))
    if (kind == "classification" and "per_sample" in port.capabilities.exit_policies
            and data.draw(st.booleans(), label="per-sample exit")):
        args.update(depth_tau=0.0, exit_policy="per_sample")
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    # the batch-rows clause: per-sample exit (EXIT-3), per-sample width (MAT-3), else STATE-1
    clause = "EXIT-3" if "depth_tau" in args else "MAT-3" if "mat_dim" in args else "STATE-1"
    check.start_case({"check": "batch-rows", **shared.checkpoint, "images": dict(images.ref),
                      "method": "distill" if kind == "distill" else "classify",
                      "call_args": callargs.encode(args)})

    def row_args(b: int) -> dict[str, Any]:
        return {**args, **({"mat_dim": args["mat_dim"][b]} if "mat_dim" in args else {})}

    def body(checker: Checker) -> None:
        batched = shared.call(images, args)
        for b in range(images.array.shape[0]):
            single = shared.call(images.rows(b, b + 1), row_args(b))
            for key in ("logits", "features"):
                if batched.get(key) is not None:
                    checker.close(key, batched[key][b:b + 1], single[key], clause=clause,
                                  where=f"row {b}", versus="port")

    def locate() -> None:
        b = int(check.failed[0].where.split()[1])
        check.repro = {**check.repro, "row": b}
        check.divergence = _stage_divergence(port, (shared.load(), images, args),
                                             (shared.load(), images.rows(b, b + 1), row_args(b)),
                                             slice(b, b + 1), check.tolerance.rtol)

    check_on_shared_handle(check, shared, body, "batched call vs one image at a time",
                           locate=locate)


@pytest.mark.clauses("OUT-1", "DEPTH-1")
@pytest.mark.parametrize("model", ["cls-flex-block", "distill-flex-block"])
def test_output_shapes(port, handles, model):
    """OUT-1: logits (B, 1, C); features (B, M, output_feat_dim) for distill; DEPTH-1: a fixed
    depth d reports exit depth d for every sample."""
    shared, config = _load(port, handles, model)
    kind = kind_of(config)
    out = shared.call(_images(config, 0, batch=2), {"depth": 1})
    assert np.shape(out["logits"]) == (2, 1, config["num_classes"]), (
        f"OUT-1: logits shape {np.shape(out['logits'])}, expected (2, 1, {config['num_classes']})")
    if kind == "distill":
        M = (config["img_size"] // config["patch_size"]) ** 2
        assert np.shape(out.get("features")) == (2, M, config["output_feat_dim"]), (
            f"OUT-1: features shape {np.shape(out.get('features'))}, expected "
            f"(2, {M}, {config['output_feat_dim']})")
    elif out.get("exit_depths") is not None:
        assert np.asarray(out["exit_depths"]).tolist() == [1, 1], (
            f"DEPTH-1: depth=1 reported exit depths {out['exit_depths']}")
