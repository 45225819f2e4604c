"""Shared helpers of the PyTorch tests: tiny configs, checkpoints, oracle comparison.

Expected values always come from the NumPy oracle (``reference_numpy``) or from a
second, independent run of the model (invariants), never from the code under test.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver, DistillAdaPerceiver
from reference_numpy import tiny_config as tiny_config  # re-exported: the tests' tiny model

RTOL = {"float64": 1e-10, "float32": 1e-4}  # spec TOL-1


def model_class(config: dict):
    return DistillAdaPerceiver if "output_feat_dim" in config else ClassificationAdaPerceiver


def rel_err(a, b) -> float:
    """TOL-1 error: max |a - b| / max(max |b|, 1e-30), a converted to float64."""
    a = a.detach().to(torch.float64).cpu().numpy() if isinstance(a, torch.Tensor) else a
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.isfinite(a).all()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@contextmanager
def checkpoint(config: dict, seed: int = 0, dtype: str = "float32"):
    """A temporary checkpoint directory written by the oracle, and its float64 weights as
    the oracle loads them back (so both sides use identical, dtype-rounded values)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        rn.save_checkpoint(path, config, rn.random_weights(config, seed=seed), dtype=dtype)
        _, weights = rn.load_checkpoint(path)
        yield path, weights


def images(B: int, config: dict, H: int | None = None, W: int | None = None,
           seed: int = 0) -> np.ndarray:
    H = H or config["img_size"]
    W = W or config["img_size"]
    return np.random.default_rng(seed).standard_normal((B, config["in_channels"], H, W))


def run(model, x: np.ndarray, dtype: torch.dtype = torch.float64, **kwargs):
    """The model's output for NumPy images, under inference_mode."""
    with torch.inference_mode():
        return model(torch.from_numpy(x).to(dtype), **kwargs)


# --- Hypothesis strategies ---------------------------------------------------------------

@st.composite
def tiny_configs(draw, kind: str | None = None) -> dict:
    """Random tiny configs over every config switch (embed dim, heads, depth, ffn_ratio,
    granularities, widths, patch/image size, attention and mask types, FFN/bias flags)."""
    kind = kind or draw(st.sampled_from(["classification", "distill"]))
    heads = draw(st.integers(1, 3))
    head_dim = draw(st.sampled_from([2, 4, 6]))
    D = heads * head_dim
    L = draw(st.integers(2, 12))
    grans = sorted(draw(st.sets(st.integers(1, L + 4), min_size=1, max_size=4)))
    patch = draw(st.integers(1, 4))
    overrides = {
        "embed_dim": D,
        "num_heads": heads,
        "depth": draw(st.integers(1, 3)),
        "max_latent_tokens": L,
        "rope_theta": draw(st.sampled_from([10000, 100.0])),
        "ffn_ratio": draw(st.sampled_from([0.5, 1.0, 1.5, 2.57, 3.3])),
        "mask_token_grans": grans,
        "mat_dims": sorted(draw(st.sets(st.integers(1, D), min_size=1, max_size=3))),
        "patch_size": patch,
        "img_size": patch * draw(st.integers(1, 4)),
        "in_channels": draw(st.integers(1, 3)),
        "num_classes": draw(st.integers(2, 7)),
        "attn_layer": draw(st.sampled_from(["flex", "full"])),
        "block_mask": draw(st.sampled_from(["block", "causal", "none"])),
        "use_embed_ffn": draw(st.booleans()),
        "use_output_ffn": draw(st.booleans()),
        "qkv_bias": draw(st.booleans()),
        "proj_bias": draw(st.booleans()),
        "ls_init_values": draw(st.sampled_from([1e-6, 0.0, None])),
    }
    if kind == "distill":
        overrides["output_feat_dim"] = draw(st.integers(1, 5))
    return rn.default_config(kind, **overrides)


@st.composite
def call_args(draw, config: dict, batch: int) -> dict:
    """Random valid call arguments for ``config`` and a batch of ``batch`` images."""
    D, L = config["embed_dim"], config["max_latent_tokens"]
    args = {}
    if draw(st.booleans()):
        args["num_tokens"] = draw(st.integers(1, L + 5))  # above L exercises NTK scaling
    width = st.integers(1, D)
    choice = draw(st.sampled_from(["none", "int", "list"]))
    if choice == "int":
        args["mat_dim"] = draw(width)
    elif choice == "list":
        args["mat_dim"] = draw(st.lists(width, min_size=batch, max_size=batch))
    if draw(st.booleans()):
        args["token_grans"] = sorted(draw(st.sets(st.integers(1, L + 5), min_size=1,
                                                  max_size=3)))
    if "output_feat_dim" not in config and draw(st.booleans()):
        args["depth_tau"] = draw(st.floats(0.0, 1.0))
        args["exit_policy"] = draw(st.sampled_from(["batch_mean", "per_sample"]))
    elif draw(st.booleans()):
        args["depth"] = draw(st.integers(1, config["depth"]))
    return args
