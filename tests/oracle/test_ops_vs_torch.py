"""Each NumPy op of the oracle, and their composition into the forward pass, against
PyTorch's float64 implementation of the same computation.

torch is used only here, as an independent reference; the oracle never imports it.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from reference_numpy import default_config, random_weights, trace
from reference_numpy.masks import block_mask, causal_mask, full_mask
from reference_numpy.ops import (
    gelu,
    layer_norm,
    linear,
    multi_head_attention,
    patch_embed,
    resize_pos_embed,
    softmax,
)

TOL = 1e-12


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@given(st.integers(1, 3), st.integers(1, 7), st.sampled_from([1, 4, 16, 33]), st.integers(0, 99))
def test_layer_norm_matches_torch(B, N, D, seed):
    """NUM-1: LayerNorm with eps 1e-6 and affine weight/bias equals F.layer_norm(eps=1e-6)."""
    rng = _rng(seed)
    x = rng.standard_normal((B, N, D)) * 3 + 1
    w, b = rng.standard_normal(D), rng.standard_normal(D)
    expected = F.layer_norm(_t(x), (D,), _t(w), _t(b), eps=1e-6).numpy()
    np.testing.assert_allclose(layer_norm(x, w, b), expected, rtol=0, atol=TOL)


def test_layer_norm_eps_is_1e_minus_6():
    """NUM-1: on a nearly constant row the eps term dominates; 1e-5 (torch's default) differs."""
    x = np.array([[0.0, 1e-3, -1e-3, 0.0]])
    ones, zeros = np.ones(4), np.zeros(4)
    ours = layer_norm(x, ones, zeros)
    np.testing.assert_allclose(ours, F.layer_norm(_t(x), (4,), eps=1e-6).numpy(), atol=TOL)
    assert not np.allclose(ours, F.layer_norm(_t(x), (4,), eps=1e-5).numpy(), atol=1e-3)


def test_gelu_is_exact_erf_form():
    """NUM-2: GELU equals torch's exact (erf) GELU to ~1e-15 and is not the tanh approximation."""
    x = np.concatenate([np.linspace(-12, 12, 2001), _rng(1).standard_normal(500) * 4])
    exact = F.gelu(_t(x), approximate="none").numpy()
    tanh = F.gelu(_t(x), approximate="tanh").numpy()
    ours = gelu(x)
    assert np.max(np.abs(ours - exact)) <= 4e-15 * max(1.0, np.max(np.abs(x)))
    assert np.max(np.abs(ours - tanh)) > 1e-5


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias):
    """NUM-3: y = x W^T + b, with and without bias."""
    rng = _rng(2)
    x, w = rng.standard_normal((2, 5, 7)), rng.standard_normal((3, 7))
    b = rng.standard_normal(3) if bias else None
    expected = F.linear(_t(x), _t(w), None if b is None else _t(b)).numpy()
    np.testing.assert_allclose(linear(x, w, b), expected, rtol=0, atol=TOL)


def test_softmax_matches_torch_and_is_stable():
    """ATTN-1: stable softmax; huge logits do not overflow and -inf entries get probability 0."""
    x = _rng(3).standard_normal((4, 9)) * 50 + 800
    x[1, 3] = -np.inf
    expected = torch.softmax(_t(x), dim=-1).numpy()
    ours = softmax(x)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)
    assert ours[1, 3] == 0.0 and np.isfinite(ours).all()


def _torch_mha(q, k, v, H, mask):
    """Torch reference: heads split as reshape(B, N, H, hd), SDPA with a boolean mask
    (True = attend)."""
    B, N, D = q.shape
    M = k.shape[1]
    split = [_t(t).reshape(B, n, H, D // H).transpose(1, 2) for t, n in ((q, N), (k, M), (v, M))]
    attn_mask = None if mask is None else _t(mask)
    out = F.scaled_dot_product_attention(*split, attn_mask=attn_mask)  # (B, H, N, hd)
    return out.transpose(1, 2).reshape(B, N, D).numpy()


@pytest.mark.parametrize(
    "mask",
    [None, full_mask(7), causal_mask(7), block_mask([2, 4, 7]), block_mask([7])],
    ids=["no-mask", "none", "causal", "block-2-4-7", "block-7"],
)
@pytest.mark.parametrize("H", [1, 2, 4])
def test_self_attention_matches_sdpa(mask, H):
    """ATTN-1, MASK-3, MASK-4, MASK-5: softmax(q k^T / sqrt(hd) + mask) v per head equals SDPA."""
    rng = _rng(4)
    q, k, v = (rng.standard_normal((2, 7, 8)) for _ in range(3))
    expected = _torch_mha(q, k, v, H, mask)
    np.testing.assert_allclose(multi_head_attention(q, k, v, H, mask), expected, rtol=0, atol=TOL)


def test_cross_attention_matches_sdpa():
    """ATTN-1, ATTN-2: N queries over M != N keys, unmasked."""
    rng = _rng(5)
    q = rng.standard_normal((3, 1, 12))
    k, v = rng.standard_normal((3, 10, 12)), rng.standard_normal((3, 10, 12))
    np.testing.assert_allclose(multi_head_attention(q, k, v, 3), _torch_mha(q, k, v, 3, None),
                               rtol=0, atol=TOL)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 12, 20), (2, 1, 16, 4)])
def test_patch_embed_matches_conv2d(shape):
    """PATCH-1: stride-P conv as a matmul; tokens row-major over the (H/P, W/P) grid."""
    rng = _rng(6)
    P, D = 4, 5
    x = rng.standard_normal(shape)
    w, b = rng.standard_normal((D, shape[1], P, P)), rng.standard_normal(D)
    conv = F.conv2d(_t(x), _t(w), _t(b), stride=P)  # (B, D, H/P, W/P)
    expected = conv.flatten(2).transpose(1, 2).numpy()  # (B, M, D), row-major grid
    np.testing.assert_allclose(patch_embed(x, w, b), expected, rtol=0, atol=TOL)


def _torch_resize(pos: np.ndarray, grid: tuple[int, int], antialias: bool = True) -> np.ndarray:
    M, D = pos.shape
    s = int(round(M ** 0.5))
    square = _t(pos).reshape(1, s, s, D).permute(0, 3, 1, 2)  # (1, D, s, s)
    out = F.interpolate(square, size=grid, mode="bicubic", antialias=antialias,
                        align_corners=False)  # (1, D, gh, gw)
    return out.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], D).numpy()


@pytest.mark.parametrize(
    "side, grid",
    [(4, (6, 6)), (6, (3, 3)), (4, (2, 8)), (7, (14, 14)), (5, (3, 7)), (8, (5, 5)),
     (14, (16, 16)), (14, (9, 20)), (3, (1, 1)), (4, (4, 8))],
)
def test_resize_pos_embed_matches_antialiased_bicubic(side, grid):
    """PATCH-2: resize equals F.interpolate(bicubic, antialias=True, align_corners=False)
    for up-, down- and non-square resampling."""
    pos = _rng(7).standard_normal((side * side, 3))
    np.testing.assert_allclose(resize_pos_embed(pos, grid), _torch_resize(pos, grid),
                               rtol=0, atol=TOL)


@given(st.integers(1, 9), st.integers(1, 17), st.integers(1, 17), st.integers(0, 99))
def test_resize_pos_embed_matches_torch_for_any_grid(side, gh, gw, seed):
    """PATCH-2: antialiased bicubic equals torch for arbitrary up/down/mixed grid sizes."""
    pos = _rng(seed).standard_normal((side * side, 2))
    np.testing.assert_allclose(resize_pos_embed(pos, (gh, gw)), _torch_resize(pos, (gh, gw)),
                               rtol=0, atol=TOL)


def test_resize_is_not_plain_bicubic_when_upsampling():
    """PATCH-2: antialiased bicubic (a=-0.5) differs from plain bicubic (a=-0.75), even when
    upsampling."""
    pos = _rng(8).standard_normal((16, 2))
    plain = _torch_resize(pos, (6, 6), antialias=False)
    assert np.max(np.abs(resize_pos_embed(pos, (6, 6)) - plain)) > 1e-3


def test_resize_same_square_grid_is_identity():
    """PATCH-2: the trained square grid uses pos_embed as is."""
    pos = _rng(9).standard_normal((25, 4))
    assert resize_pos_embed(pos, (5, 5)) is pos


# ----------------------------------------------------------------- the whole forward pass


def _torch_forward(w, c, x, N, width, depth, grans):
    """An independent torch composition of the forward pass (spec semantics.md) for ONE
    scalar width: complex RoPE, conv2d patches, F.interpolate pos_embed, SDPA attention."""
    T = {key: torch.from_numpy(value) for key, value in w.items()}
    D, H = c["embed_dim"], c["num_heads"]
    hd, P, L = D // H, c["patch_size"], c["max_latent_tokens"]
    x = _t(x)
    B = x.shape[0]

    def norm(t, name):
        return F.layer_norm(t, (D,), T[f"{name}.weight"], T[f"{name}.bias"], eps=1e-6)

    def dense(t, name):
        return F.linear(t, T[f"{name}.weight"], T.get(f"{name}.bias"))

    def ffn(t, name, hidden=None):
        h = F.gelu(F.linear(t, T[f"{name}.fc1.weight"][:hidden], T[f"{name}.fc1.bias"][:hidden]))
        return F.linear(h, T[f"{name}.fc2.weight"][:, :hidden], T[f"{name}.fc2.bias"])

    freqs = 1.0 / c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    if N > L:
        freqs = freqs * L / N
    cis = torch.polar(torch.ones(N, hd // 2, dtype=torch.float64),
                      torch.outer(torch.arange(N, dtype=torch.float64), freqs))

    def rope(t):  # (B, N, D): complex pairs (2i, 2i+1) within each head
        z = torch.view_as_complex(t.reshape(B, N, H, hd // 2, 2).contiguous())
        return torch.view_as_real(z * cis[None, :, None, :]).reshape(B, N, D)

    def attention(q, k, v, mask=None):
        heads = [t.reshape(B, t.shape[1], H, hd).transpose(1, 2) for t in (q, k, v)]
        out = F.scaled_dot_product_attention(*heads, attn_mask=mask)
        return out.transpose(1, 2).reshape(B, q.shape[1], D)

    def cross(name, sink, src, rope_q=False, rope_k=False):
        s, r = norm(sink, f"{name}.snk_norm"), norm(src, f"{name}.src_norm")
        q, k = dense(s, f"{name}.cattn.q"), dense(r, f"{name}.cattn.k")
        q, k = (rope(q) if rope_q else q), (rope(k) if rope_k else k)
        return dense(attention(q, k, dense(r, f"{name}.cattn.v")), f"{name}.cattn.proj")

    patches = F.conv2d(x, T["patch_embed.embed.proj.weight"], T["patch_embed.embed.proj.bias"],
                       stride=P).flatten(2).transpose(1, 2)
    grid = (x.shape[2] // P, x.shape[3] // P)
    side = c["img_size"] // P
    pos = T["patch_embed.pos_embed"]
    if grid != (side, side):
        square = pos.reshape(1, side, side, D).permute(0, 3, 1, 2)
        pos = F.interpolate(square, size=grid, mode="bicubic", antialias=True,
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, D)
    patches = patches + pos
    if c["use_embed_ffn"]:
        patches = ffn(norm(patches, "patch_embed.norm"), "patch_embed.ffn")

    mask = None
    if c["attn_layer"] == "flex" and c["block_mask"] == "block":
        kept = [g for g in grans if g <= N]
        kept = kept if kept and kept[-1] == N else kept + [N]
        ends = torch.tensor(kept)
        block_end = ends[torch.bucketize(torch.arange(N), ends, right=True)]
        mask = torch.arange(N)[None, :] < block_end[:, None]

    lat = T["process_latents.token"].expand(B, N, D)
    lat = lat + cross("read_head", lat, patches, rope_q=True)
    hidden = int(width * c["ffn_ratio"])
    for i in range(depth):
        p = f"blocks.{i}"
        h = norm(lat, f"{p}.norm1")
        a = dense(attention(rope(dense(h, f"{p}.attn.q")), rope(dense(h, f"{p}.attn.k")),
                            dense(h, f"{p}.attn.v"), mask), f"{p}.attn.proj")
        lat = lat + (a * T[f"{p}.ls1.gamma"] if c["ls_init_values"] else a)
        f = ffn(norm(lat, f"{p}.norm2"), f"{p}.ffn", hidden)
        lat = lat + (f * T[f"{p}.ls2.gamma"] if c["ls_init_values"] else f)
    out = T["output_latents.token"].expand(B, 1, D)
    out = out + cross("write_head", out, lat, rope_k=True)
    if c["use_output_ffn"]:
        logits = ffn(norm(out, "output_adapter.norm"), "output_adapter.ffn")
    else:
        logits = dense(out, "output_adapter.ffn")
    if "output_feat_dim" not in c:
        return logits.numpy(), None
    queries = dense(patches, "output_latents_feat.proj")
    queries = queries + cross("write_head_feat", queries, lat, rope_k=True)
    features = ffn(norm(queries, "output_adapter_feat.norm"), "output_adapter_feat.ffn")
    return logits.numpy(), features.numpy()


_BASE = {"embed_dim": 16, "num_heads": 2, "depth": 3, "max_latent_tokens": 16, "ffn_ratio": 2.5,
         "mask_token_grans": [2, 4, 8, 16], "mat_dims": [4, 8, 16], "img_size": 16,
         "patch_size": 4, "num_classes": 10}


@pytest.mark.parametrize("kind, overrides, N, widths, depth, shape", [
    ("classification", {"use_embed_ffn": True}, 6, [3, 16], 2, (2, 3, 8, 12)),
    ("classification", {"qkv_bias": False, "ls_init_values": None, "use_output_ffn": True,
                        "attn_layer": "full"}, 20, [16, 5], 3, (2, 3, 16, 16)),
    ("classification", {"proj_bias": False, "block_mask": "none", "use_embed_ffn": True},
     16, [8, 8], 1, (2, 3, 24, 20)),
    ("distill", {"use_embed_ffn": True, "output_feat_dim": 12}, 5, [4, 11], 3, (2, 3, 16, 8)),
])
def test_forward_pass_matches_torch_composition(kind, overrides, N, widths, depth, shape):
    """PATCH-1, PATCH-2, PATCH-3, LAT-1, LAT-2, READ-1, BLOCK-1, BLOCK-2, BLOCK-3, MASK-1,
    MASK-3, ROPE-1, ROPE-2, ROPE-3, ROPE-4, MAT-1, MAT-3, WRITE-1, HEAD-1, OUT-1, DIST-1, DIST-2,
    DIST-3: the oracle's logits (and features) equal an independent torch composition, run
    image by image with each image's scalar width."""
    config = default_config(kind, **{**_BASE, **overrides})
    weights = random_weights(config, seed=3)
    x = _rng(11).standard_normal(shape)
    result = trace(weights, config, x, num_tokens=N, mat_dim=widths, depth=depth)
    for b, m in enumerate(widths):
        logits, features = _torch_forward(weights, config, x[b:b + 1], N, m, depth,
                                          config["mask_token_grans"])
        np.testing.assert_allclose(result.logits[b:b + 1], logits, rtol=0, atol=1e-10)
        if features is not None:
            np.testing.assert_allclose(result.features[b:b + 1], features, rtol=0, atol=1e-10)
