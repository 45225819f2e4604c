"""The keyword arguments of ``forward``, checked and defaulted into ``CallArgs`` (ARG-1..8).

``parse_call`` runs the checks in a fixed order (x, depth, num_tokens, mat_dim,
depth_tau, token_grans, exit_policy), so the first bad argument is the one
reported. A wrong type is a ``TypeError`` and a wrong value a ``ValueError``; the
message reads "<argument> must be <what is allowed>, got <value>" (ARG-8), word for
word as in the NumPy oracle. Nothing is clamped. ``bool`` is not an int; NumPy
integer scalars are ints; tuples, 1-D tensors and 1-D NumPy arrays are sequences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch

from .config import EXIT_POLICIES, MAX_TOKENS, is_int, is_real
from .limits import check_memory

# LIM-4: the largest |value| of an image; beyond it the float32 LayerNorm variance of the
# patch tokens can overflow (finite but wrong, or NaN, logits).
MAX_ABS_INPUT = 1e8


@dataclass(frozen=True)
class CallArgs:
    """Validated, defaulted arguments of one forward pass, in the order the forward uses them.

    Latents and their mask: num_tokens N and token_grans. Width: hidden, the FFN hidden
    units h = int(m * ffn_ratio) per batch row, or None for full width (MAT-1, MAT-4).
    Depth: blocks to run (the maximum when depth_tau is given), the exit threshold
    depth_tau and the exit_policy.
    """

    num_tokens: int
    token_grans: tuple[int, ...]
    hidden: tuple[int, ...] | None
    depth: int
    depth_tau: float | None
    exit_policy: str


def parse_call(config: Mapping[str, Any], x: Any, *, num_tokens: Any = None, mat_dim: Any = None,
               depth: Any = None, depth_tau: Any = None, token_grans: Any = None,
               exit_policy: Any = "batch_mean") -> CallArgs:
    """Check every argument of one forward pass and fill the defaults (ARG-1..8)."""
    check_images(x, config)
    blocks = check_depth(depth, config)
    tokens = check_num_tokens(num_tokens, config)
    check_memory(config, x, tokens)
    widths = check_mat_dim(mat_dim, config, batch=x.shape[0])
    hidden = None if widths is None else tuple(int(m * config["ffn_ratio"]) for m in widths)
    tau = check_depth_tau(depth_tau, depth)
    grans = check_token_grans(token_grans, config)
    return CallArgs(num_tokens=tokens, token_grans=grans, hidden=hidden, depth=blocks,
                    depth_tau=tau, exit_policy=check_exit_policy(exit_policy))


def _error(kind: type[Exception], name: str, allowed: str, got: str) -> Exception:
    """ARG-8: "<name> must be <allowed>, got <got>"."""
    return kind(f"{name} must be {allowed}, got {got}")


def _described(value: Any) -> str:
    """The value with its type name, for a wrong-type message."""
    return f"{value!r} ({type(value).__name__})"


def _items(value: Any) -> list | None:
    """The items of a 1-D sequence (list, tuple, 1-D tensor or NumPy array), else None."""
    if isinstance(value, torch.Tensor) or type(value).__module__ == "numpy":
        if getattr(value, "ndim", 0) != 1:
            return None
    elif not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        return None
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _optional_int(name: str, value: Any, default: int, high: float, allowed: str,
                  note: str = "") -> int:
    """None -> ``default``; else an int in 1..high, described as ``allowed``."""
    if value is None:
        return default
    if not is_int(value):
        raise _error(TypeError, name, f"{allowed} or None", _described(value))
    if not 1 <= value <= high:
        raise _error(ValueError, name, allowed + note, repr(value))
    return int(value)


def check_num_tokens(num_tokens: Any, config: Mapping[str, Any]) -> int:
    """ARG-1: N, an int >= 1; None means max_latent_tokens. LIM-2: at most MAX_TOKENS."""
    tokens = _optional_int("num_tokens", num_tokens, config["max_latent_tokens"], math.inf,
                           "an int >= 1")
    if tokens > MAX_TOKENS:
        raise _error(ValueError, "num_tokens", f"an int in 1..{MAX_TOKENS} (the largest "
                     "supported number of latent tokens)", repr(num_tokens))
    return tokens


def check_depth(depth: Any, config: Mapping[str, Any]) -> int:
    """ARG-3: blocks to run, an int in 1..config depth; None means all blocks."""
    total = config["depth"]
    return _optional_int("depth", depth, total, total, f"an int in 1..{total}",
                         " (the model depth)")


def check_mat_dim(mat_dim: Any, config: Mapping[str, Any], batch: int) -> tuple[int, ...] | None:
    """ARG-2: width m, an int in 1..embed_dim or a sequence of B such ints; None means full
    width. Returns one m per batch row, or None."""
    if mat_dim is None:
        return None
    D = config["embed_dim"]
    allowed = f"an int in 1..{D} (embed_dim) or a list of {batch} such ints (one per image)"
    widths = [mat_dim] * batch if is_int(mat_dim) else _items(mat_dim)
    if widths is None:
        raise _error(TypeError, "mat_dim", allowed, _described(mat_dim))
    if not all(map(is_int, widths)):
        raise _error(TypeError, "mat_dim", allowed, repr(mat_dim))
    if len(widths) != batch:
        raise _error(ValueError, "mat_dim", allowed,
                     f"a list of length {len(widths)}: {mat_dim!r}")
    if not all(1 <= m <= D for m in widths):
        raise _error(ValueError, "mat_dim", allowed, repr(mat_dim))
    return tuple(map(int, widths))


def check_depth_tau(depth_tau: Any, depth: Any) -> float | None:
    """ARG-4: the exit threshold tau, a real in [0, 1]; never together with depth."""
    if depth_tau is None:
        return None
    allowed = "a real number in [0, 1]"
    if not is_real(depth_tau):
        raise _error(TypeError, "depth_tau", allowed, _described(depth_tau))
    if not (math.isfinite(depth_tau) and 0.0 <= depth_tau <= 1.0):
        raise _error(ValueError, "depth_tau", allowed, repr(depth_tau))
    if depth is not None:
        raise ValueError(f"depth_tau cannot be combined with depth: got depth_tau={depth_tau!r} "
                         f"and depth={depth!r}; give one of them")
    return float(depth_tau)


def check_token_grans(token_grans: Any, config: Mapping[str, Any]) -> tuple[int, ...]:
    """ARG-5: granularities, a non-empty, strictly increasing sequence of ints >= 1; None
    means the config's mask_token_grans."""
    if token_grans is None:
        return tuple(config["mask_token_grans"])
    allowed = "a non-empty, strictly increasing list of ints >= 1"
    grans = _items(token_grans)
    if grans is None:
        raise _error(TypeError, "token_grans", allowed, _described(token_grans))
    if not all(map(is_int, grans)):
        raise _error(TypeError, "token_grans", allowed, repr(token_grans))
    if not grans or grans[0] < 1 or any(a >= b for a, b in pairwise(grans)):
        raise _error(ValueError, "token_grans", allowed, repr(token_grans))
    return tuple(map(int, grans))


def check_exit_policy(exit_policy: Any) -> str:
    """ARG-6: "batch_mean" or "per_sample"."""
    allowed = f"one of {list(EXIT_POLICIES)}"
    if not isinstance(exit_policy, str):
        raise _error(TypeError, "exit_policy", allowed, _described(exit_policy))
    if exit_policy not in EXIT_POLICIES:
        raise _error(ValueError, "exit_policy", allowed, repr(exit_policy))
    return exit_policy


def check_images(x: Any, config: Mapping[str, Any]) -> None:
    """ARG-7: x, a dense real tensor (B, C, H, W) (integers are converted; bool, complex,
    meta and sparse tensors are not images), B >= 1, C == in_channels, H and W positive
    multiples of patch_size, all values finite with |value| <= MAX_ABS_INPUT (LIM-4; values
    are not checked while compiling)."""
    C, P = config["in_channels"], config["patch_size"]
    allowed = (f"a finite real tensor of shape (B, {C}, H, W) with B >= 1 and H, W positive "
               f"multiples of patch_size {P}")
    if not isinstance(x, torch.Tensor):
        raise _error(TypeError, "x", f"a torch.Tensor ({allowed})", type(x).__name__)
    if x.is_meta or x.layout != torch.strided:  # no values to check or compute with
        raise _error(TypeError, "x", f"a dense tensor with data ({allowed})",
                     "a meta tensor" if x.is_meta else f"layout {x.layout}")
    if x.dtype == torch.bool or x.is_complex():
        raise _error(TypeError, "x", allowed, f"dtype {x.dtype}")
    shape = tuple(x.shape)  # (B, C, H, W) when valid
    if not (len(shape) == 4 and shape[0] >= 1 and shape[1] == C
            and all(side >= 1 and side % P == 0 for side in shape[2:])):
        raise _error(ValueError, "x", allowed, f"shape {shape}")
    if torch.compiler.is_compiling():
        return
    finite = bool(torch.isfinite(x).all())
    low, high = torch.aminmax(x) if finite else (0.0, 0.0)
    check_values("x", allowed, finite, max(-float(low), float(high)))


def check_values(name: str, allowed: str, finite: bool, peak: float) -> None:
    """ARG-7 and LIM-4 on image values, given whether all are finite and the largest
    magnitude ``peak`` (shared by the ONNX Runtime session,
    ``adaperceiver.onnx.session.check_images``)."""
    if not finite:
        raise _error(ValueError, name, allowed, "non-finite values (NaN or inf)")
    if peak > MAX_ABS_INPUT:  # LIM-4
        raise _error(ValueError, name, allowed,
                     f"values up to {peak:.3g} in magnitude (the largest allowed is "
                     f"{MAX_ABS_INPUT:.0e}: beyond it float32 LayerNorm overflows)")
