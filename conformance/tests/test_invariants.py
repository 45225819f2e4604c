"""Family 3: invariants that need no oracle: the port is compared with itself.

Checkpoints are the committed golden ones (GOLD-1), or edited copies of them:
perturbing weights a call must not read (FFN units beyond the width, blocks
beyond the depth) must leave its output unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import exits
from conformance.cases import make_images, write_checkpoint
from conformance.verify import kind_of, run

from .support import golden_checkpoint, read_config, require, require_stages, scratch_dir

Weights = dict[str, np.ndarray]


def _images(config: Mapping[str, Any], seed: int, batch: int = 3) -> np.ndarray:
    return make_images((batch, config["in_channels"], config["img_size"], config["img_size"]),
                       seed)


def _load(port, name: str, call_args: Mapping[str, Any] | None = None):
    """(directory, config, handle) of a golden checkpoint; skips unsupported configs."""
    directory = golden_checkpoint(name)
    config = read_config(directory)
    require(port, config, call_args or {}, (config["img_size"],) * 2)
    return directory, config, port.load(str(directory))


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
def test_prefix_property(port, check, data, model):
    """MASK-6: for N <= max_latent_tokens with flex attention and a block (MASK-3) or causal
    (MASK-4) mask, the first g latents after the read and after every block equal the run with
    N = g, for each granularity g of the run (MASK-2)."""
    require_stages(port)
    directory, config, handle = _load(port, model)
    N = data.draw(st.integers(1, config["max_latent_tokens"]), label="num_tokens")
    args = {"num_tokens": N}
    if data.draw(st.booleans(), label="custom token_grans"):
        args["token_grans"] = sorted(data.draw(st.sets(st.integers(1, N), min_size=1,
                                                       max_size=3)))
    grans = effective_grans(args.get("token_grans", config["mask_token_grans"]), N)
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    check.start_case({"checkpoint": model, "call_args": args, "granularities": grans})
    full = port.stages(handle, images, **args)
    for g in grans[:-1]:
        prefix = port.stages(handle, images, **{**args, "num_tokens": g})
        for name in [n for n in full if n == "read" or n.startswith("block_")]:
            check.close("latents", full[name][:, :g], prefix[name], where=f"{name}[:, :{g}]")
    check.assert_ok("MASK-6", f"first g latents of the N={N} run vs the N=g run")


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
def test_width_nesting(port, check, data):
    """MAT-1, MAT-2: at width m the output depends only on the first h = int(m * ffn_ratio)
    hidden units of each block FFN: randomising units >= h leaves it unchanged."""
    source, config, handle = _load(port, "cls-flex-block")
    m = data.draw(st.integers(1, config["embed_dim"] - 1), label="mat_dim")
    hidden = int(m * config["ffn_ratio"])
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    check.start_case({"checkpoint": "cls-flex-block", "call_args": {"mat_dim": m},
                      "perturbed": f"FFN hidden units >= {hidden}"})
    with scratch_dir() as tmp:
        edited = _edited_copy(source, tmp, _perturb_ffn_beyond(hidden))
        original = run(port, handle, "classification", images, {"mat_dim": m})
        perturbed = run(port, port.load(str(edited)), "classification", images, {"mat_dim": m})
    check.close("logits", perturbed["logits"], original["logits"])
    check.assert_ok("MAT-1", f"width {m} output after perturbing FFN units >= {hidden}")


@pytest.mark.clauses("MAT-3", "MAT-4")
@given(data=st.data())
def test_per_sample_width_and_full_width(port, check, data):
    """MAT-3: with a per-sample mat_dim list each row equals the scalar-width run of that row.
    MAT-4: mat_dim=None equals mat_dim=embed_dim."""
    directory, config, handle = _load(port, "cls-flex-block")
    D = config["embed_dim"]
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    widths = data.draw(st.lists(st.integers(1, D), min_size=3, max_size=3), label="widths")
    check.start_case({"checkpoint": "cls-flex-block", "call_args": {"mat_dim": widths}})
    full = run(port, handle, "classification", images, {})["logits"]
    check.close("logits", run(port, handle, "classification", images, {"mat_dim": D})["logits"],
                full, where="mat_dim=embed_dim vs None")
    if port.capabilities.per_sample_width:
        mixed = run(port, handle, "classification", images, {"mat_dim": widths})["logits"]
        for b, m in enumerate(widths):
            scalar = run(port, handle, "classification", images, {"mat_dim": m})["logits"]
            check.close("logits", mixed[b], scalar[b], where=f"row {b} (mat_dim {m})")
    check.assert_ok("MAT-3, MAT-4", "per-sample / full width vs scalar width")


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
def test_depth_truncation(port, check, data):
    """DEPTH-1: depth d runs blocks 0..d-1 only: randomising blocks >= d leaves the output
    unchanged; depth = config depth equals depth None."""
    source, config, handle = _load(port, "cls-flex-block")
    d = data.draw(st.integers(1, config["depth"] - 1), label="depth")
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    check.start_case({"checkpoint": "cls-flex-block", "call_args": {"depth": d},
                      "perturbed": f"blocks >= {d}"})
    with scratch_dir() as tmp:
        edited = port.load(str(_edited_copy(source, tmp, _perturb_blocks_from(d))))
        check.close("logits", run(port, edited, "classification", images, {"depth": d})["logits"],
                    run(port, handle, "classification", images, {"depth": d})["logits"])
    check.close("logits",
                run(port, handle, "classification", images, {"depth": config["depth"]})["logits"],
                run(port, handle, "classification", images, {})["logits"],
                where="depth=config depth vs None")
    check.assert_ok("DEPTH-1", f"depth {d} output after perturbing later blocks")


@pytest.mark.clauses("EXIT-1", "EXIT-2", "EXIT-3", "EXIT-4")
@pytest.mark.parametrize("model", ["cls-flex-block", "cls-odd"])
@given(data=st.data())
def test_early_exit_consistency(port, check, data, model):
    """EXIT-1..4 on the port alone: from the port's own fixed-depth confidences (EXIT-1) the
    exit depths follow the policy (EXIT-2 batch mean, EXIT-3 per sample), and every row's
    logits equal the fixed-depth logits at its exit depth (EXIT-4)."""
    if not port.capabilities.exit_policies:
        pytest.skip("port has no confidence early exit (capabilities.exit_policies)")
    directory, config, handle = _load(port, model)
    policy = data.draw(st.sampled_from(sorted(port.capabilities.exit_policies)), label="policy")
    images = _images(config, data.draw(st.integers(0, 2**16), label="image_seed"))
    fixed = {d: run(port, handle, "classification", images, {"depth": d})["logits"]
             for d in range(1, config["depth"] + 1)}
    conf = exits.confidence_table(fixed.__getitem__, config["depth"])
    taus = [0.0] + [tau for tau, _ in exits.separated_taus(conf, policy)]
    args = {"depth_tau": data.draw(st.sampled_from(taus), label="depth_tau"),
            "exit_policy": policy}
    check.start_case({"checkpoint": model, "call_args": args})
    out = run(port, handle, "classification", images, args)
    if out.get("exit_depths") is None:
        pytest.skip("port returns no exit_depths")
    expected = exits.exit_depths(conf, args["depth_tau"], policy)
    check.exact("exit_depths", out["exit_depths"], expected)
    for b, d in enumerate(expected):
        check.close("logits", out["logits"][b], fixed[int(d)][b],
                    where=f"row {b} (exit depth {d})")
    check.assert_ok("EXIT-1..4", "early exit vs fixed-depth runs of the same port")


@pytest.mark.clauses("STATE-1", "MASK-2", "MASK-3")
def test_stateless_after_other_granularities(port, check, tmp_path):
    """STATE-1: a call's result does not depend on earlier calls on the same handle. Upstream
    caches the last mask: with grans [8, 16, 32], running N=20 and then N=32 masks the second
    call with [8, 16, 20, 32]; it must equal N=32 on a fresh handle."""
    from reference_numpy import default_config

    config = default_config("classification", embed_dim=16, num_heads=2, depth=2,
                            max_latent_tokens=32, mask_token_grans=[8, 16, 32], mat_dims=[16],
                            img_size=8, patch_size=4, num_classes=5, attn_layer="flex",
                            block_mask="block")
    require(port, config, {}, (8, 8))
    directory = write_checkpoint(tmp_path, config, seed=0)
    images = make_images((2, 3, 8, 8), seed=0)
    check.start_case({"config": "grans [8, 16, 32], N=20 then N=32", "call_args":
                      {"num_tokens": 32}})
    used = port.load(str(directory))
    run(port, used, "classification", images, {"num_tokens": 20})
    after = run(port, used, "classification", images, {"num_tokens": 32})["logits"]
    fresh = run(port, port.load(str(directory)), "classification", images,
                {"num_tokens": 32})["logits"]
    check.close("logits", after, fresh)
    check.assert_ok("STATE-1", "N=32 after an N=20 call on the same handle vs a fresh handle")


@pytest.mark.clauses("STATE-1")
@given(data=st.data())
def test_stateless_interleaved_calls(port, check, data):
    """STATE-1: interleaving calls with different arguments on one handle gives, for each
    call, the result of the same call on a fresh handle."""
    directory, config, handle = _load(port, "cls-flex-block")
    L, D = config["max_latent_tokens"], config["embed_dim"]
    calls = data.draw(st.lists(st.fixed_dictionaries({}, optional={
        "num_tokens": st.integers(1, 2 * L), "mat_dim": st.integers(1, D),
        "depth": st.integers(1, config["depth"]),
        "token_grans": st.sets(st.integers(1, L), min_size=1, max_size=3).map(sorted)}),
        min_size=2, max_size=4), label="calls")
    images = _images(config, 0)
    check.start_case({"checkpoint": "cls-flex-block", "calls": calls})
    for i, args in enumerate(calls):
        shared = run(port, handle, "classification", images, args)["logits"]
        fresh = run(port, port.load(str(directory)), "classification", images, args)["logits"]
        check.close("logits", shared, fresh, where=f"call {i}")
    check.assert_ok("STATE-1", "calls on a shared handle vs fresh handles")


@pytest.mark.clauses("STATE-1", "EXIT-3", "OUT-1")
@pytest.mark.parametrize("model", ["cls-flex-block", "distill-flex-block"])
@given(data=st.data())
def test_batching_equivalence(port, check, data, model):
    """STATE-1, EXIT-3: without the batch-mean exit (the one batch-coupled rule, EXIT-2) each
    row of a batched call equals the call on that image alone (a per-sample mat_dim list
    becomes that row's scalar width)."""
    directory, config, handle = _load(port, model)
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
    check.start_case({"checkpoint": model, "call_args": args})
    batched = run(port, handle, kind, images, args)
    for b in range(images.shape[0]):
        row_args = {**args, **({"mat_dim": args["mat_dim"][b]} if "mat_dim" in args else {})}
        single = run(port, handle, kind, images[b:b + 1], row_args)
        for key in ("logits", "features"):
            if batched.get(key) is not None:
                check.close(key, batched[key][b:b + 1], single[key], where=f"row {b}")
    check.assert_ok("STATE-1", "batched call vs one image at a time")


@pytest.mark.clauses("OUT-1", "DEPTH-1")
@pytest.mark.parametrize("model", ["cls-flex-block", "distill-flex-block"])
def test_output_shapes(port, check, model):
    """OUT-1: logits (B, 1, C); features (B, M, output_feat_dim) for distill; DEPTH-1: a fixed
    depth d reports exit depth d for every sample."""
    directory, config, handle = _load(port, model)
    kind = kind_of(config)
    images = _images(config, 0, batch=2)
    out = run(port, handle, kind, images, {"depth": 1})
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
