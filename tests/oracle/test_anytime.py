"""The oracle's anytime grid against its own single runs (spec anytime.md, ANY-1..4).

Expected values are ``classify`` / ``distill`` calls, one per grid entry, at the depth
and token count the entry stands for: the definition of ANY-1, computed by the
ordinary forward pass, never by ``anytime``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_numpy import anytime, classify, distill, random_weights, tiny_config

TOL = 1e-12


def _single(weights, config, images, g, depth, args):
    fixed = {k: v for k, v in args.items() if k != "num_tokens"}
    run = distill if "output_feat_dim" in config else classify
    out = run(weights, config, images, num_tokens=g, depth=depth, **fixed)
    return (out[0] if isinstance(out, tuple) else out)[:, 0]


def _assert_grid_equals_single_runs(weights, config, images, args):
    grid = anytime(weights, config, images, **args)
    K = config["depth"]
    assert grid.depths == tuple(range(1, K + 1))
    assert grid.logits.shape == (images.shape[0], K, len(grid.granularities),
                                 config["num_classes"])
    for j, g in enumerate(grid.granularities):
        for depth in grid.depths:
            expected = _single(weights, config, images, g, depth, args)
            err = np.abs(grid.logits[:, depth - 1, j] - expected).max() / np.abs(expected).max()
            assert err <= TOL, (g, depth, err)
    return grid


@given(
    kind=st.sampled_from(["classification", "distill"]),
    layout=st.sampled_from([("flex", "block"), ("flex", "causal"), ("flex", "none"),
                            ("full", "block")]),
    num_tokens=st.one_of(st.none(), st.integers(1, 19)),
    mat_dim=st.one_of(st.none(), st.integers(1, 16), st.lists(st.integers(1, 16),
                                                               min_size=2, max_size=2)),
    token_grans=st.one_of(st.none(), st.lists(st.integers(1, 18), min_size=1, max_size=3,
                                              unique=True).map(sorted)),
    seed=st.integers(0, 3),
)
def test_grid_entries_equal_single_runs(kind, layout, num_tokens, mat_dim, token_grans, seed):
    """ANY-1, ANY-2, ANY-3, ANY-4, MAT-3, MASK-2: for both kinds, every attention layout (the
    one-pass path and the fallback), on- and off-grid N and N > max_latent_tokens (16),
    scalar or per-sample widths and custom granularities, each grid entry equals the
    single run it stands for; the granularities are MASK-2's list."""
    attn_layer, block_mask = layout
    config = tiny_config(kind, attn_layer=attn_layer, block_mask=block_mask, depth=2)
    weights = random_weights(config, seed=seed)
    images = np.random.default_rng(seed).standard_normal((2, 3, 16, 16))
    args = {k: v for k, v in (("num_tokens", num_tokens), ("mat_dim", mat_dim),
                              ("token_grans", token_grans)) if v is not None}
    grid = _assert_grid_equals_single_runs(weights, config, images, args)
    N = num_tokens or config["max_latent_tokens"]
    assert grid.granularities[-1] == N
    assert grid.one_pass == (layout in (("flex", "block"), ("flex", "causal")) and N <= 16)


def test_one_pass_is_not_used_where_prefixes_differ():
    """ANY-4: with N > max_latent_tokens the prefix of the N-latent pass differs from the run
    with g latents (NTK scaling), so a one-pass grid would be wrong; the grid is not."""
    config = tiny_config("classification", depth=1)
    weights = random_weights(config, seed=0)
    images = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    grid = anytime(weights, config, images, num_tokens=20)
    assert not grid.one_pass
    single = classify(weights, config, images, num_tokens=8)[:, 0]
    np.testing.assert_allclose(grid.logits[:, 0, grid.granularities.index(8)], single,
                               rtol=0, atol=TOL * np.abs(single).max())


@pytest.mark.parametrize("bad, match", [
    ({"num_tokens": 0}, "num_tokens must be"),
    ({"mat_dim": [4]}, "mat_dim must be"),
    ({"token_grans": [4, 4]}, "token_grans must be"),
])
def test_grid_checks_arguments(bad, match):
    """ARG-1, ARG-2, ARG-5, ARG-8: the grid's arguments are checked as a forward pass's."""
    config = tiny_config("classification")
    weights = random_weights(config, seed=0)
    with pytest.raises(ValueError, match=match):
        anytime(weights, config, np.zeros((2, 3, 16, 16)), **bad)
