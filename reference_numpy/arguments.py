"""Validation of the call arguments of ``trace`` / ``classify`` / ``distill`` (ARG-1..8).

Every check raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong
value, with a message that starts with the argument name, shows the value and
says what is allowed (ARG-8). Nothing is clamped: bad input is an error.
``bool`` is not an int; NumPy integer scalars are ints.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import expected_shapes
from .config import MAX_TOKENS
from .limits import check_memory

EXIT_POLICIES = ("batch_mean", "per_sample")
# LIM-4: the largest |value| of an image. Beyond it a float32 implementation's LayerNorm
# variance of the patch tokens can overflow (finite but wrong, or NaN, results).
MAX_ABS_INPUT = 1e8


@dataclass(frozen=True)
class CallArgs:
    """The validated, defaulted arguments of one forward pass.

    widths holds one FFN width m per batch row (None: full width); depth is the
    number of blocks to run (the maximum when depth_tau is given).
    """

    images: np.ndarray
    num_tokens: int
    widths: tuple[int, ...] | None
    depth: int
    depth_tau: float | None
    token_grans: tuple[int, ...]
    exit_policy: str


def _is_int(value: Any) -> bool:
    """Python or NumPy integer, but not bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    """The value and its type, for error messages (ARG-8)."""
    return f"{value!r} ({type(value).__name__})"


def check_num_tokens(num_tokens: Any, config: Mapping[str, Any]) -> int:
    """ARG-1: an int >= 1; None means max_latent_tokens."""
    if num_tokens is None:
        return int(config["max_latent_tokens"])
    if not _is_int(num_tokens):
        raise TypeError(f"num_tokens must be an int >= 1 or None, got {_describe(num_tokens)}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be an int >= 1, got {num_tokens!r}")
    if num_tokens > MAX_TOKENS:  # LIM-2
        raise ValueError(f"num_tokens must be an int in 1..{MAX_TOKENS} (the largest supported "
                         f"number of latent tokens), got {num_tokens!r}")
    return int(num_tokens)


def check_mat_dim(mat_dim: Any, config: Mapping[str, Any], batch: int) -> tuple[int, ...] | None:
    """ARG-2: an int in 1..embed_dim, or a sequence of B such ints; None means full width.

    Returns one width per batch row, or None.
    """
    if mat_dim is None:
        return None
    D = config["embed_dim"]
    allowed = f"an int in 1..{D} (embed_dim) or a list of {batch} such ints (one per image)"
    if _is_int(mat_dim):
        values = [mat_dim] * batch
    elif isinstance(mat_dim, np.ndarray) and mat_dim.ndim == 1 or (
        isinstance(mat_dim, Sequence) and not isinstance(mat_dim, (str, bytes))
    ):
        values = list(mat_dim)
        if not all(_is_int(m) for m in values):
            raise TypeError(f"mat_dim must be {allowed}, got {mat_dim!r}")
        if len(values) != batch:
            raise ValueError(
                f"mat_dim must be {allowed}, got a list of length {len(values)}: {mat_dim!r}"
            )
    else:
        raise TypeError(f"mat_dim must be {allowed}, got {_describe(mat_dim)}")
    if not all(1 <= m <= D for m in values):
        raise ValueError(f"mat_dim must be {allowed}, got {mat_dim!r}")
    return tuple(int(m) for m in values)


def check_depth(depth: Any, config: Mapping[str, Any]) -> int:
    """ARG-3: an int in 1..config depth; None means all blocks."""
    total = config["depth"]
    if depth is None:
        return int(total)
    if not _is_int(depth):
        raise TypeError(f"depth must be an int in 1..{total} or None, got {_describe(depth)}")
    if not 1 <= depth <= total:
        raise ValueError(f"depth must be an int in 1..{total} (the model depth), got {depth!r}")
    return int(depth)


def check_depth_tau(depth_tau: Any, depth: Any, config: Mapping[str, Any]) -> float | None:
    """ARG-4: a real number in [0, 1], never together with depth; for a distill config a
    TypeError (the distill model has no depth_tau)."""
    if depth_tau is None:
        return None
    if "output_feat_dim" in config:  # not an argument of the distill model: TypeError (ARG-4)
        raise TypeError(
            f"depth_tau is only allowed for the classification model, got {depth_tau!r} "
            "with a distill config"
        )
    if not isinstance(depth_tau, numbers.Real) or isinstance(depth_tau, bool):
        raise TypeError(f"depth_tau must be a real number in [0, 1], got {_describe(depth_tau)}")
    if not (math.isfinite(depth_tau) and 0.0 <= depth_tau <= 1.0):
        raise ValueError(f"depth_tau must be a real number in [0, 1], got {depth_tau!r}")
    if depth is not None:
        raise ValueError(
            f"depth_tau cannot be combined with depth: got depth_tau={depth_tau!r} and "
            f"depth={depth!r}; give one of them"
        )
    return float(depth_tau)


def check_token_grans(token_grans: Any, config: Mapping[str, Any]) -> tuple[int, ...]:
    """ARG-5: a non-empty, strictly increasing sequence of positive ints; None means config's."""
    if token_grans is None:
        return tuple(int(g) for g in config["mask_token_grans"] or ())
    allowed = "a non-empty, strictly increasing list of ints >= 1"
    if (isinstance(token_grans, np.ndarray) and token_grans.ndim != 1
            or not isinstance(token_grans, (Sequence, np.ndarray))
            or isinstance(token_grans, (str, bytes))):
        raise TypeError(f"token_grans must be {allowed}, got {_describe(token_grans)}")
    values = list(token_grans)
    if not all(_is_int(g) for g in values):
        raise TypeError(f"token_grans must be {allowed}, got {token_grans!r}")
    increasing = all(a < b for a, b in zip(values[:-1], values[1:], strict=True))
    if not values or values[0] < 1 or not increasing:
        raise ValueError(f"token_grans must be {allowed}, got {token_grans!r}")
    return tuple(int(g) for g in values)


def check_exit_policy(exit_policy: Any) -> str:
    """ARG-6: "batch_mean" or "per_sample"."""
    if not isinstance(exit_policy, str):
        raise TypeError(f"exit_policy must be one of {list(EXIT_POLICIES)}, "
                        f"got {_describe(exit_policy)}")
    if exit_policy not in EXIT_POLICIES:
        raise ValueError(f"exit_policy must be one of {list(EXIT_POLICIES)}, got {exit_policy!r}")
    return exit_policy


def check_images(images: Any, config: Mapping[str, Any]) -> np.ndarray:
    """ARG-7: a 4-D real array (B, C_in, H_img, W_img), B >= 1, C_in == in_channels, H_img
    and W_img positive
    multiples of patch_size, all values finite, with |value| <= MAX_ABS_INPUT (LIM-4).
    Returned as float64."""
    C, P = config["in_channels"], config["patch_size"]
    allowed = (f"a finite real array of shape (B, {C}, H, W) with B >= 1 and H, W positive "
               f"multiples of patch_size {P}")
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a NumPy array ({allowed}), got {type(images).__name__}")
    real = np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    if not real:
        raise TypeError(f"images must be {allowed}, got dtype {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"images must be {allowed}, got shape {images.shape}")
    B, channels, H, W = images.shape
    if B < 1 or channels != C or H < 1 or W < 1 or H % P or W % P:
        raise ValueError(f"images must be {allowed}, got shape {images.shape}")
    images = images.astype(np.float64)
    if not np.isfinite(images).all():
        raise ValueError(f"images must be {allowed}, got non-finite values (NaN or inf)")
    peak = float(np.max(np.abs(images)))
    if peak > MAX_ABS_INPUT:  # LIM-4
        raise ValueError(f"images must be {allowed}, got values up to {peak:.3g} in magnitude "
                         f"(the largest allowed is {MAX_ABS_INPUT:.0e}: beyond it float32 "
                         "LayerNorm overflows)")
    return images


def check_weights(weights: Any, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """weights: a mapping with exactly the keys and shapes of ``expected_shapes(config)``
    (CKPT-3), all values finite. Returned as float64 arrays."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping from state-dict key to array, "
                        f"got {type(weights).__name__}")
    expected = expected_shapes(config)
    converted = {key: np.asarray(value, dtype=np.float64) for key, value in weights.items()}
    problems = [f"missing {key}" for key in expected if key not in converted]
    problems += [f"unexpected {key}" for key in converted if key not in expected]
    problems += [f"{key} has shape {value.shape}, expected {expected[key]}"
                 for key, value in converted.items()
                 if key in expected and value.shape != expected[key]]
    problems += [f"{key} holds NaN or inf" for key, value in converted.items()
                 if not np.isfinite(value).all()]
    if problems:
        raise ValueError("weights must match the config's state-dict layout with finite values: "
                         + "; ".join(problems))
    return converted


def validate_call(
    config: Mapping[str, Any],
    weights: Any,
    images: Any,
    *,
    num_tokens: Any,
    mat_dim: Any,
    depth: Any,
    depth_tau: Any,
    token_grans: Any,
    exit_policy: Any,
) -> tuple[dict[str, np.ndarray], CallArgs]:
    """Check every argument of one forward pass and fill the defaults (ARG-1..8).

    Returns (weights as float64, the call's arguments).
    """
    weights = check_weights(weights, config)
    images = check_images(images, config)
    blocks = check_depth(depth, config)
    tokens = check_num_tokens(num_tokens, config)
    check_memory(config, images.shape, tokens)
    return weights, CallArgs(
        images=images,
        num_tokens=tokens,
        widths=check_mat_dim(mat_dim, config, images.shape[0]),
        depth=blocks,
        depth_tau=check_depth_tau(depth_tau, depth, config),
        token_grans=check_token_grans(token_grans, config),
        exit_policy=check_exit_policy(exit_policy),
    )
