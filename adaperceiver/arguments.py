"""Validation of the forward-call arguments (ARG-1..8).

Every check raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong
value; the message starts with the argument name, shows the value and says what
is allowed (ARG-8). Nothing is clamped. ``bool`` is not an int; NumPy integer
scalars are ints. The rules and wording are those of the NumPy oracle.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch

from .config import is_int

EXIT_POLICIES = ("batch_mean", "per_sample")


@dataclass(frozen=True)
class CallArgs:
    """Validated, defaulted arguments of one forward pass.

    hidden: FFN hidden units h = int(m * ffn_ratio) per batch row, or None for full
    width (MAT-1, MAT-4); depth: blocks to run (the maximum when depth_tau is given).
    """

    num_tokens: int
    hidden: tuple[int, ...] | None
    depth: int
    depth_tau: float | None
    token_grans: tuple[int, ...]
    exit_policy: str


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_num_tokens(num_tokens: Any, config: Mapping[str, Any]) -> int:
    """ARG-1: an int >= 1; None means max_latent_tokens."""
    if num_tokens is None:
        return config["max_latent_tokens"]
    if not is_int(num_tokens):
        raise TypeError(f"num_tokens must be an int >= 1 or None, got {_describe(num_tokens)}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be an int >= 1, got {num_tokens!r}")
    return int(num_tokens)


def _is_sequence(value: Any) -> bool:
    if isinstance(value, torch.Tensor) or type(value).__module__ == "numpy":
        return getattr(value, "ndim", 0) == 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def check_mat_dim(mat_dim: Any, config: Mapping[str, Any], batch: int) -> tuple[int, ...] | None:
    """ARG-2: an int in 1..embed_dim or a sequence of B such ints; None means full width.

    Returns one width m per batch row, or None.
    """
    if mat_dim is None:
        return None
    D = config["embed_dim"]
    allowed = f"an int in 1..{D} (embed_dim) or a list of {batch} such ints (one per image)"
    if is_int(mat_dim):
        values = [mat_dim] * batch
    elif _is_sequence(mat_dim):
        values = mat_dim.tolist() if hasattr(mat_dim, "tolist") else list(mat_dim)
        if not all(is_int(m) for m in values):
            raise TypeError(f"mat_dim must be {allowed}, got {mat_dim!r}")
        if len(values) != batch:
            raise ValueError(
                f"mat_dim must be {allowed}, got a list of length {len(values)}: {mat_dim!r}")
    else:
        raise TypeError(f"mat_dim must be {allowed}, got {_describe(mat_dim)}")
    if not all(1 <= m <= D for m in values):
        raise ValueError(f"mat_dim must be {allowed}, got {mat_dim!r}")
    return tuple(int(m) for m in values)


def check_depth(depth: Any, config: Mapping[str, Any]) -> int:
    """ARG-3: an int in 1..config depth; None means all blocks."""
    total = config["depth"]
    if depth is None:
        return total
    if not is_int(depth):
        raise TypeError(f"depth must be an int in 1..{total} or None, got {_describe(depth)}")
    if not 1 <= depth <= total:
        raise ValueError(f"depth must be an int in 1..{total} (the model depth), got {depth!r}")
    return int(depth)


def check_depth_tau(depth_tau: Any, depth: Any) -> float | None:
    """ARG-4: a real number in [0, 1], never together with depth."""
    if depth_tau is None:
        return None
    if not isinstance(depth_tau, numbers.Real) or isinstance(depth_tau, bool):
        raise TypeError(f"depth_tau must be a real number in [0, 1], got {_describe(depth_tau)}")
    if not (math.isfinite(depth_tau) and 0.0 <= depth_tau <= 1.0):
        raise ValueError(f"depth_tau must be a real number in [0, 1], got {depth_tau!r}")
    if depth is not None:
        raise ValueError(
            f"depth_tau cannot be combined with depth: got depth_tau={depth_tau!r} and "
            f"depth={depth!r}; give one of them")
    return float(depth_tau)


def check_token_grans(token_grans: Any, config: Mapping[str, Any]) -> tuple[int, ...]:
    """ARG-5: a non-empty, strictly increasing sequence of ints >= 1; None means config's."""
    if token_grans is None:
        return tuple(config["mask_token_grans"])
    allowed = "a non-empty, strictly increasing list of ints >= 1"
    if not _is_sequence(token_grans):
        raise TypeError(f"token_grans must be {allowed}, got {_describe(token_grans)}")
    values = token_grans.tolist() if hasattr(token_grans, "tolist") else list(token_grans)
    if not all(is_int(g) for g in values):
        raise TypeError(f"token_grans must be {allowed}, got {token_grans!r}")
    if not values or values[0] < 1 or any(a >= b for a, b in pairwise(values)):
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


def check_images(x: Any, config: Mapping[str, Any]) -> None:
    """ARG-7: a real tensor (B, C, H, W) (integers are converted, bool and complex are not
    images), B >= 1, C == in_channels, H and W positive multiples of patch_size, all values
    finite (not checked while compiling)."""
    C, P = config["in_channels"], config["patch_size"]
    allowed = (f"a finite real tensor of shape (B, {C}, H, W) with B >= 1 and H, W positive "
               f"multiples of patch_size {P}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor ({allowed}), got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"x must be {allowed}, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"x must be {allowed}, got shape {tuple(x.shape)}")
    B, channels, H, W = x.shape
    if B < 1 or channels != C or H < 1 or W < 1 or H % P or W % P:
        raise ValueError(f"x must be {allowed}, got shape {tuple(x.shape)}")
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"x must be {allowed}, got non-finite values (NaN or inf)")


def parse_call(config: Mapping[str, Any], x: Any, *, num_tokens: Any = None, mat_dim: Any = None,
               depth: Any = None, depth_tau: Any = None, token_grans: Any = None,
               exit_policy: Any = "batch_mean") -> CallArgs:
    """Check every argument of one forward pass and fill the defaults (ARG-1..8)."""
    check_images(x, config)
    blocks = check_depth(depth, config)
    tokens = check_num_tokens(num_tokens, config)
    widths = check_mat_dim(mat_dim, config, x.shape[0])
    hidden = None if widths is None else tuple(int(m * config["ffn_ratio"]) for m in widths)
    return CallArgs(
        num_tokens=tokens,
        hidden=hidden,
        depth=blocks,
        depth_tau=check_depth_tau(depth_tau, depth),
        token_grans=check_token_grans(token_grans, config),
        exit_policy=check_exit_policy(exit_policy),
    )
