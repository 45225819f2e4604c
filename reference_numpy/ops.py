"""Numerical building blocks of AdaPerceiver, in float64 NumPy.

Every function is pure: arrays in, a new array out. Shapes use the notation of
spec/semantics.md: B batch, S query tokens and R key tokens of an attention (ATTN-1),
M patches, D embed_dim, H heads, hd = D / H head dim, P patch size, C_in image
channels, H_img and W_img image height and width.
"""

from __future__ import annotations

import math

import numpy as np

LAYER_NORM_EPS = 1e-6
BICUBIC_A = -0.5  # Keys' cubic convolution coefficient used by antialiased bicubic

_erf = np.frompyfunc(math.erf, 1, 1)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis (NUM-1).

    y = (x - mean(x)) / sqrt(var(x) + 1e-6) * weight + bias, var biased (divide by D).
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU (NUM-2): gelu(x) = x/2 * (1 + erf(x / sqrt(2))), erf from libm."""
    return 0.5 * x * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Linear layer (NUM-3): y = x W^T + b, with W of shape (out, in) and b of shape (out,)."""
    y = x @ weight.T
    return y if bias is None else y + bias


def mlp(x: np.ndarray, fc1: tuple, fc2: tuple) -> np.ndarray:
    """Two-layer FFN (BLOCK-3): fc2(GELU(fc1(x))); fc1 and fc2 are (weight, bias) pairs."""
    return linear(gelu(linear(x, *fc1)), *fc2)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax: exp(x - max x) / sum exp(x - max x); -inf entries give 0."""
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(B, S, D) -> (B, H, S, hd): channel c belongs to head c // hd (ATTN-1)."""
    B, N, D = x.shape
    return x.reshape(B, N, num_heads, D // num_heads).transpose(0, 2, 1, 3)  # (B, N, H, hd)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, H, S, hd) -> (B, S, D), the inverse of ``split_heads``."""
    B, H, N, hd = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, H * hd)  # (B, N, H, hd) -> (B, N, D)


def multi_head_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Scaled dot-product attention over H heads (ATTN-1), without the output projection.

    q (B, S, D), k and v (B, R, D), heads split as reshape(B, S, H, hd).
    out_h = softmax(q_h k_h^T / sqrt(hd), masked) v_h, heads merged back to (B, S, D).
    ``mask`` is a boolean (N, M) array, True where query i may attend key j; None attends all.
    """
    qh, kh, vh = (split_heads(t, num_heads) for t in (q, k, v))  # (B, H, N|M, hd)
    scores = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(qh.shape[-1])  # (B, H, N, M)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return merge_heads(softmax(scores) @ vh)


def patch_embed(images: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Stride-P convolution with a P x P kernel as one matmul (PATCH-1).

    images (B, C_in, H_img, W_img), weight (D, C_in, P, P), bias (D,) -> (B, M, D) with
    M = (H_img/P)(W_img/P), tokens ordered row-major over the (H_img/P, W_img/P) grid:
    token[b, r * (W_img/P) + c] = sum_{ch,y,x} weight[:, ch, y, x] * images[b, ch, rP + y, cP + x]
                              + bias.
    """
    B, C, H, W = images.shape
    D, _, P, _ = weight.shape
    gh, gw = H // P, W // P
    patches = images.reshape(B, C, gh, P, gw, P)  # (B, C, gh, P, gw, P)
    patches = patches.transpose(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, P, P)
    patches = patches.reshape(B, gh * gw, C * P * P)  # (B, M, C*P*P), row-major grid
    return linear(patches, weight.reshape(D, C * P * P), bias)  # (D, C, P, P) -> (D, C*P*P)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel, a = -0.5, support [-2, 2] (PATCH-2):
    (a+2)|x|^3 - (a+3)|x|^2 + 1 for |x| < 1;  a|x|^3 - 5a|x|^2 + 8a|x| - 4a for 1 <= |x| < 2."""
    a = BICUBIC_A
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def antialiased_bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) matrix of 1-D antialiased bicubic weights, align_corners=False (PATCH-2).

    Same computation as PyTorch's ``interpolate(mode="bicubic", antialias=True)``:
    scale s = in/out; the kernel is stretched by max(s, 1) (support 2 * max(s, 1));
    output i has centre c = s (i + 0.5) and reads inputs j in
    [max(int(c - support + 0.5), 0), min(int(c + support + 0.5), in_size)),
    weight_ij = cubic((j - c + 0.5) / max(s, 1)), normalised to sum 1 over j.
    """
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = 2.0 * stretch
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        j = np.arange(lo, hi)
        w = _cubic((j - centre + 0.5) / stretch)
        weights[i, lo:hi] = w / w.sum()
    return weights


def resize_pos_embed(pos_embed: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Positional embedding for a (gh, gw) patch grid (PATCH-2).

    pos_embed (M, D) belongs to the trained square grid s x s, s = sqrt(M). For the
    same grid it is returned as is; otherwise it is resampled separably with
    antialiased bicubic weights Wy (gh, s) and Wx (gw, s):
    out[y, x] = sum_{r,c} Wy[y, r] Wx[x, c] pos[r, c]; returned as (gh * gw, D), row-major.
    """
    M, D = pos_embed.shape
    side = math.isqrt(M)
    if side * side != M:
        raise ValueError(f"pos_embed must hold a square grid of patches, got {M} patches")
    gh, gw = grid
    if (gh, gw) == (side, side):
        return pos_embed
    square = pos_embed.reshape(side, side, D)  # (M, D) -> (s, s, D), row-major grid
    wy = antialiased_bicubic_weights(side, gh)
    wx = antialiased_bicubic_weights(side, gw)
    resized = np.einsum("yr,xc,rcd->yxd", wy, wx, square)  # (gh, gw, D)
    return resized.reshape(gh * gw, D)  # (gh, gw, D) -> (gh * gw, D)
