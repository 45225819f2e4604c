"""The anytime grid of the PyTorch model against separate runs of its own forward (ANY-1..6).

Every grid entry is compared with the single forward call it stands for: float64 to
1e-10, float32 to TOL-1 (1e-4). Expected values come from ``forward`` (a second,
independent code path: ``_write`` reads all N latents of a run with N = g) or from the
NumPy oracle's grid (``reference_numpy.anytime``), never from ``anytime`` itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch_helpers import checkpoint, images, model_class, rel_err, tiny_config, tiny_configs

import reference_numpy as rn
from adaperceiver import AnytimeOutput, early_exit
from adaperceiver.flops import flops

RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}  # TOL-1


def _load(config, seed=0, dtype=torch.float64):
    with checkpoint(config, seed=seed) as (path, _):
        return model_class(config).from_pretrained(path).to(dtype)


@st.composite
def grid_calls(draw, config: dict, batch: int) -> dict:
    """num_tokens (on and off the granularities, above L for the fallback), scalar or
    per-sample widths, custom granularities."""
    D, L = config["embed_dim"], config["max_latent_tokens"]
    args = {}
    if draw(st.booleans()):
        args["num_tokens"] = draw(st.integers(1, L + 3))
    choice = draw(st.sampled_from(["none", "int", "list"]))
    if choice == "int":
        args["mat_dim"] = draw(st.integers(1, D))
    elif choice == "list":
        args["mat_dim"] = draw(st.lists(st.integers(1, D), min_size=batch, max_size=batch))
    if draw(st.booleans()):
        args["token_grans"] = sorted(draw(st.sets(st.integers(1, L + 3), min_size=1,
                                                  max_size=3)))
    return args


def _check_grid(model, x: torch.Tensor, args: dict, rtol: float) -> AnytimeOutput:
    """ANY-1: every entry [b, l, j] equals forward(num_tokens=G[j], depth=l+1)[b, 0]."""
    with torch.no_grad():
        grid = model.anytime(x, **args)
        fixed = {k: v for k, v in args.items() if k != "num_tokens"}
        B, K = x.shape[0], model.config["depth"]
        assert grid.logits.shape == (B, K, len(grid.granularities),
                                     model.config["num_classes"])
        assert grid.depths == tuple(range(1, K + 1))
        for j, g in enumerate(grid.granularities):
            for depth in grid.depths:
                single = model(x, num_tokens=g, depth=depth, **fixed).logits[:, 0]
                err = rel_err(grid.logits[:, depth - 1, j], single.double().numpy())
                assert err <= rtol, (g, depth, err, grid.one_pass)
    return grid


@given(tiny_configs(), st.integers(1, 3), st.data())
def test_grid_entries_equal_single_runs_float64(config, batch, data):
    """ANY-1, ANY-2, ANY-3, ANY-4, MAT-3: over drawn configs (both model kinds, every
    attn_layer / block_mask, so both the one-pass path and the fallback) and calls
    (per-sample widths, custom granularities, off-grid and NTK-range N), every grid entry
    equals its single run to 1e-10 in float64."""
    args = data.draw(grid_calls(config, batch))
    model = _load(config, seed=batch)
    x = torch.from_numpy(images(batch, config, seed=batch))
    grid = _check_grid(model, x, args, RTOL[torch.float64])
    N = args.get("num_tokens", config["max_latent_tokens"])
    assert grid.one_pass == (config["attn_layer"] == "flex" and config["block_mask"] != "none"
                             and N <= config["max_latent_tokens"])  # ANY-3
    assert grid.granularities[-1] == N  # MASK-2 list ends at N


@pytest.mark.parametrize("overrides,args", [
    ({}, {}),
    ({}, {"num_tokens": 11, "mat_dim": [3, 16, 7], "token_grans": [3, 8]}),
    ({"block_mask": "causal"}, {"num_tokens": 13}),
    ({"attn_layer": "full"}, {"mat_dim": 7}),  # ANY-4 fallback
    ({}, {"num_tokens": 20}),  # N > L: ANY-4 fallback (ROPE-3)
])
@pytest.mark.parametrize("kind", ["classification", "distill"])
def test_grid_entries_equal_single_runs_float32(kind, overrides, args):
    """ANY-1, ANY-3, ANY-4, TOL-1: in float32 every entry is within 1e-4 of its single run."""
    config = tiny_config(kind, **overrides)
    model = _load(config, dtype=torch.float32)
    x = torch.from_numpy(images(3, config, seed=1)).float()
    _check_grid(model, x, args, RTOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind, overrides, args", [
    ("classification", {}, {"num_tokens": 11, "mat_dim": [3, 16], "token_grans": [3, 8]}),
    ("classification", {"attn_layer": "full"}, {"num_tokens": 6}),
    ("distill", {"block_mask": "causal"}, {"mat_dim": 9}),
])
def test_grid_matches_the_oracle_grid(kind, overrides, args, dtype):
    """ANY-1..4, TOL-1: the PyTorch grid equals the oracle's grid (reference_numpy.anytime)
    within 1e-10 in float64 and 1e-4 in float32, with the same axes."""
    config = tiny_config(kind, **overrides)
    with checkpoint(config, seed=2) as (path, weights):
        model = model_class(config).from_pretrained(path).to(dtype)
    x = images(2, config, seed=3)
    expected = rn.anytime(weights, config, x, **args)
    with torch.no_grad():
        grid = model.anytime(torch.from_numpy(x).to(dtype), **args)
    assert grid.granularities == expected.granularities and grid.depths == expected.depths
    assert grid.one_pass == expected.one_pass
    assert rel_err(grid.logits, expected.logits) <= RTOL[dtype]


def test_grid_reports_its_axes_and_costs():
    """ANY-1, ANY-5: granularities are MASK-2's list; gflops[l, j] is the analytic cost of
    the single run it stands for (per-sample widths: the batch mean); the grid costs about
    one full pass, far less than all its entries together."""
    config = tiny_config("classification")
    model = _load(config)
    x = torch.from_numpy(images(2, config))
    grid = model.anytime(x, num_tokens=11, mat_dim=[4, 16], token_grans=[3, 8])
    assert grid.granularities == (3, 8, 11)
    for j, g in enumerate(grid.granularities):
        for d in range(1, config["depth"] + 1):
            expected = np.mean([flops(config, num_tokens=g, mat_dim=m, depth=d,
                                      token_grans=[3, 8]) for m in (4, 16)]) / 1e9
            assert grid.gflops[d - 1, j] == pytest.approx(expected, rel=1e-12)
    assert grid.gflops[-1, -1] < grid.grid_gflops < grid.gflops.sum()
    as_tensor = model.anytime(x, num_tokens=11, mat_dim=torch.tensor([4, 16]),
                              token_grans=np.array([3, 8]))  # ARG-2, ARG-5: 1-D arrays
    np.testing.assert_array_equal(as_tensor.gflops, grid.gflops)


def _separated_taus(kappa: np.ndarray) -> list[float]:
    """Thresholds halfway between distinct confidences (and 0, 1): rounding cannot flip them."""
    values = np.unique(np.round(kappa.ravel(), 12))
    mids = [(a + b) / 2 for a, b in zip(values[:-1], values[1:], strict=True) if b - a > 1e-9]
    return [0.0, 1.0, *mids]


@given(st.integers(0, 20), st.sampled_from([None, 1, 2, 3]), st.data())
def test_early_exit_from_grid_equals_exit_forward(seed, batch_size, data):
    """ANY-6, EXIT-2, EXIT-3, EXIT-4: exit depths and logits derived from the grid's N column
    equal forward(depth_tau=tau, exit_policy=...) for both policies; batch_mean over
    consecutive batches of batch_size rows equals forward on those batches."""
    config = tiny_config("classification", depth=4, num_classes=3)
    model = _load(config, seed=seed % 4)
    x = torch.from_numpy(images(5, config, seed=seed))
    with torch.no_grad():
        column = model.anytime(x).logits[:, :, -1]  # (B, K, C)
    kappa = column.softmax(-1).amax(-1).numpy()
    policy = data.draw(st.sampled_from(["batch_mean", "per_sample"]))
    if policy == "batch_mean":  # thresholds between the batch means, not the samples
        size = batch_size or 5
        kappa = np.concatenate([kappa[i:i + size].mean(0, keepdims=True)
                                for i in range(0, 5, size)])
    tau = data.draw(st.sampled_from(_separated_taus(kappa)))
    depths, logits = early_exit(column, tau, policy, batch_size=batch_size)
    size = batch_size or 5
    with torch.no_grad():
        for start in range(0, 5, size):
            rows = slice(start, start + size)
            out = model(x[rows], depth_tau=tau, exit_policy=policy)
            assert torch.equal(depths[rows], out.exit_depths), (tau, policy)
            assert rel_err(logits[rows], out.logits[:, 0].numpy()) <= RTOL[torch.float64]


def test_early_exit_rejects_bad_arguments():
    """ARG-4, ARG-6, ARG-8: early_exit names the bad argument and what is allowed."""
    column = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="depth_tau must be"):
        early_exit(column, 1.5)
    with pytest.raises(ValueError, match="exit_policy must be"):
        early_exit(column, 0.5, "first")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        early_exit(column, 0.5, batch_size=0)
    with pytest.raises(ValueError, match="logits_by_depth must be a tensor"):
        early_exit(column[0], 0.5)


def test_grid_is_differentiable():
    """ANY-1: the grid is differentiable; the gradient of a loss on one entry equals the
    gradient of the same loss on the single run (so training may use the grid)."""
    config = tiny_config("classification")
    x = torch.from_numpy(images(2, config))
    model = _load(config)
    loss = model.anytime(x, mat_dim=[4, 16]).logits[:, 1, 2].square().sum()  # depth 2, g=8
    loss.backward()
    grid_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(x, num_tokens=8, depth=2, mat_dim=[4, 16]).logits.square().sum().backward()
    used = {n for n, p in model.named_parameters() if p.grad is not None}
    assert "blocks.1.ffn.fc1.weight" in used
    scale = max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
    for name, p in model.named_parameters():
        if name in used:  # relative to the largest gradient: some are 0 in exact arithmetic
            assert (grid_grads[name] - p.grad).abs().max().item() <= 1e-9 * scale, name
        else:  # blocks past depth 2 get no gradient from a depth-2 entry
            assert not grid_grads.get(name, torch.zeros(1)).any(), name


def test_grid_calls_are_stateless():
    """STATE-1, ANY-1: grid calls interleaved with ordinary calls (other N, granularities,
    widths) leave every result unchanged."""
    config = tiny_config("classification")
    model = _load(config)
    x = torch.from_numpy(images(2, config))
    with torch.no_grad():
        first_grid = model.anytime(x).logits.clone()
        first_run = model(x, num_tokens=6).logits.clone()
        model.anytime(x, num_tokens=5, token_grans=[1, 3], mat_dim=[2, 9])
        model(x, num_tokens=20, token_grans=[3, 7])
        assert torch.equal(model(x, num_tokens=6).logits, first_run)
        model.anytime(x, num_tokens=20)
        assert torch.equal(model.anytime(x).logits, first_grid)


def test_grid_rejects_bad_arguments():
    """ARG-1, ARG-2, ARG-5, ARG-8: anytime checks its arguments as forward does."""
    config = tiny_config("classification")
    model = _load(config)
    x = torch.from_numpy(images(2, config))
    with pytest.raises(ValueError, match="num_tokens must be"):
        model.anytime(x, num_tokens=0)
    with pytest.raises(ValueError, match="mat_dim must be"):
        model.anytime(x, mat_dim=[4])
    with pytest.raises(ValueError, match="token_grans must be"):
        model.anytime(x, token_grans=[4, 2])
