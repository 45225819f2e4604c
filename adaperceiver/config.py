"""config.json of an AdaPerceiver checkpoint: one table of constructor keywords (CKPT-2).

Each keyword is a ``Field``: its type, the values of that type it allows and its
upstream default (``REQUIRED`` where upstream has no usable one). ``resolve_config``
checks every field in one loop, then the cross-field rules, and reports all
problems in one ``ConfigError``. ``ClassificationAdaPerceiver`` takes the keys of
``CLASSIFICATION_DEFAULTS``; ``DistillAdaPerceiver`` those of ``DISTILL_DEFAULTS``
(one more: ``output_feat_dim``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

REQUIRED = object()  # sentinel: the key has no default and must be given
MAX_SIZE = 2**31 - 1  # LIM-1: the largest size (dimension, count) a config may give
MAX_TOKENS = 65536  # LIM-2: the largest number of latent tokens (max_latent_tokens, N)
EXIT_POLICIES = ("batch_mean", "per_sample")  # ARG-6
# engine.runner's engines and precisions, and which precisions each engine runs (here, not
# in adaperceiver.engine, so that the command line's --help imports no torch)
ENGINES = ("auto", "torch", "compiled", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")
SUPPORTED = {"torch": ("fp32", "bf16"), "compiled": ("fp32", "bf16"),
             "onnxruntime": ("fp32", "int8")}
# the engines and precisions that compute the whole anytime grid (engine.anytime_model)
GRID_SUPPORTED = {"torch": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8")}
LISTED_PROBLEMS = 50  # an error message lists at most this many problems, then a count
LINE_LIMIT = 500  # characters of one listed problem (a quoted key can be megabytes)


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers; bool is not an int."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for Python and NumPy reals (ints included); bool is not a real."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Field:
    """One constructor keyword (CKPT-2).

    ``type`` is int (an int in 1..``maximum``), float (a finite real accepted by ``in_range``,
    described by ``allowed``; None too when ``nullable``), bool, str (one of
    ``choices``) or list (ints >= 1, strictly ``increasing`` if set).
    """

    type: type
    default: Any = REQUIRED
    allowed: str = ""
    in_range: Callable[[Any], bool] = lambda value: True
    nullable: bool = False
    choices: tuple[str, ...] = ()
    increasing: bool = False
    maximum: int = MAX_SIZE


_POSITIVE = "a real number > 0"
_DROPOUT = Field(float, 0.0, "a real number in [0, 1)", lambda p: 0 <= p < 1)

# The upstream constructor's keywords, in its order (the canonical key order).
FIELDS: dict[str, Field] = {
    "embed_dim": Field(int),
    "num_heads": Field(int),
    "depth": Field(int),
    "max_latent_tokens": Field(int, 256, maximum=MAX_TOKENS),
    "rope_theta": Field(float, 10000, _POSITIVE, lambda theta: theta > 0),
    "ffn_ratio": Field(float, 4.0, _POSITIVE, lambda ratio: ratio > 0),
    "qkv_bias": Field(bool, True),
    "proj_bias": Field(bool, True),
    "ls_init_values": Field(float, 1e-6, "a finite real number or null (0 or null: no "
                            "LayerScale)", nullable=True),
    "proj_drop": _DROPOUT,
    "attn_drop": _DROPOUT,
    "drop_path": _DROPOUT,
    "head_drop": _DROPOUT,
    "act_layer": Field(str, "gelu", choices=("gelu",)),
    "norm_layer": Field(str, "layernorm", choices=("layernorm",)),
    "ffn_layer": Field(str, "mlp", choices=("mlp",)),
    "attn_layer": Field(str, "flex", choices=("flex", "full")),
    "process_token_init": Field(str, "learned", choices=("learned", "norm_randn")),
    "block_mask": Field(str, "block", choices=("block", "causal", "none")),
    "mask_token_grans": Field(list, increasing=True),  # upstream None crashes on list(None)
    "mat_dims": Field(list),
    "img_size": Field(int, 224),
    "in_channels": Field(int, 3),
    "patch_size": Field(int, 16),
    "num_classes": Field(int, 1000),
    "use_embed_ffn": Field(bool, False),
    "use_output_ffn": Field(bool, False),
    "output_feat_dim": Field(int, 768),  # DistillAdaPerceiver only
}

CLASSIFICATION_DEFAULTS: dict[str, Any] = {
    key: field.default for key, field in FIELDS.items() if key != "output_feat_dim"}
DISTILL_DEFAULTS: dict[str, Any] = {
    **CLASSIFICATION_DEFAULTS, "embed_dim": 768, "num_heads": 12, "depth": 12,
    "output_feat_dim": FIELDS["output_feat_dim"].default}

# Problems are listed by field type in this order, then in canonical key order.
_REPORT_ORDER = (int, float, bool, str, list)


class ProblemList(ValueError):
    """Base of ``ConfigError`` and ``hub.CheckpointError``: ``problems`` holds everything
    found wrong, and the message lists it, one problem per line (the first
    ``LISTED_PROBLEMS``, then "... and N more problems")."""

    def __init__(self, subject: str, problems: Iterable[str]):
        self.problems = list(problems)
        listed = [p if len(p) <= LINE_LIMIT else f"{p[:LINE_LIMIT]}... ({len(p)} characters)"
                  for p in self.problems[:LISTED_PROBLEMS]]
        if len(self.problems) > LISTED_PROBLEMS:
            listed.append(f"... and {len(self.problems) - LISTED_PROBLEMS} more problems")
        super().__init__(f"invalid AdaPerceiver {subject}:\n  - " + "\n  - ".join(listed))


class ConfigError(ProblemList):
    """The constructor keywords (config.json) are invalid (CKPT-2)."""

    def __init__(self, problems: Iterable[str]):
        super().__init__("config", problems)


class _Invalid(Exception):
    """One field's problem, raised by ``_canonical`` and collected by ``resolve_config``."""


def resolve_config(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``defaults`` with ``given`` and check every key (CKPT-2).

    Returns a new dict in canonical key order with ints as ``int``, reals as ``float``
    (integral reals stay ``int``) and lists as lists of ``int``. Raises ``ConfigError``
    listing every unknown key, missing required key, wrong type, out-of-range value
    and violated cross-field rule.
    """
    problems = [f"unknown config key {key!r} (allowed: {', '.join(defaults)})"
                for key in given if key not in defaults]
    config = {key: given.get(key, default) for key, default in defaults.items()}
    missing = sorted(key for key, value in config.items() if value is REQUIRED)
    problems += [f"missing required config key {key!r} (it has no default)" for key in missing]
    present = [key for key in config if key not in missing]
    for key in sorted(present, key=lambda k: _REPORT_ORDER.index(FIELDS[k].type)):
        try:
            config[key] = _canonical(key, FIELDS[key], config[key])
        except _Invalid as problem:
            problems.append(str(problem))
    problems += _cross_field_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _canonical(key: str, field: Field, value: Any) -> Any:
    """``value`` in canonical form if ``field`` allows it, else raise ``_Invalid``."""
    if field.type is int:
        if is_int(value) and 1 <= value <= field.maximum:
            return int(value)
        if is_int(value) and value > field.maximum:  # LIM-1, LIM-2
            raise _Invalid(f"{key} must be an int in 1..{field.maximum}, got {_int_text(value)}")
        raise _Invalid(f"{key} must be an int >= 1, got "
                       f"{_int_text(value) if is_int(value) else repr(value)}")
    if field.type is float:
        if value is None and field.nullable:
            return None
        if is_real(value) and math.isfinite(value) and field.in_range(value):
            return int(value) if is_int(value) else float(value)
        raise _Invalid(f"{key} must be {field.allowed}, got {value!r}")
    if field.type is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"{key} must be a bool (true/false), got {value!r}")
    if field.type is str:
        if value in field.choices:
            return value
        raise _Invalid(f"{key} {value!r} is unsupported: allowed {list(field.choices)}")
    if not isinstance(value, (list, tuple)) or not all(is_int(v) and v >= 1 for v in value):
        raise _Invalid(f"{key} must be a list of ints >= 1, got {value!r}")
    ints = [int(v) for v in value]
    if field.increasing and any(a >= b for a, b in pairwise(ints)):
        raise _Invalid(f"{key} must be strictly increasing, got {ints}")
    return ints


def _cross_field_problems(c: Mapping[str, Any]) -> Iterator[str]:
    """The rules between fields (CKPT-2): D divisible by H with an even head dim (RoPE),
    img_size a multiple of P, F = int(D * ffn_ratio) >= 1, mat_dims <= D and non-empty
    mask_token_grans for the block mask. A rule is skipped while its inputs have the
    wrong type (their own problem is already listed)."""
    D, H, P, ratio = c["embed_dim"], c["num_heads"], c["patch_size"], c["ffn_ratio"]
    D_ok = is_int(D) and 1 <= D <= MAX_SIZE
    if D_ok and is_int(H) and H >= 1:
        if D % H:
            yield f"embed_dim ({D}) must be divisible by num_heads ({H})"
        elif (D // H) % 2:
            yield (f"head dim embed_dim/num_heads = {D // H} must be even "
                   "(RoPE rotates channel pairs)")
    if is_int(P) and P >= 1 and is_int(c["img_size"]) and c["img_size"] % P:
        yield f"img_size ({c['img_size']}) must be a multiple of patch_size ({P})"
    if D_ok and is_real(ratio) and 0 < ratio < math.inf:
        product = D * float(ratio)  # F = int(D * ffn_ratio) (MAT-1); inf when it overflows
        if product < 1:
            yield f"int(embed_dim * ffn_ratio) = int({D} * {ratio}) must be >= 1"
        elif product >= MAX_SIZE + 1:  # LIM-1
            yield f"int(embed_dim * ffn_ratio) = int({D} * {ratio}) must be at most {MAX_SIZE}"
    widths = c["mat_dims"]
    if D_ok and isinstance(widths, list) and all(map(is_int, widths)):
        if too_big := [m for m in widths if m > D]:
            yield f"mat_dims must be ints in 1..embed_dim ({D}), got {too_big}"
    grans = c["mask_token_grans"]
    if c["block_mask"] == "block" and isinstance(grans, list) and not grans:
        yield 'mask_token_grans must be non-empty when block_mask is "block"'


def _int_text(value: int) -> str:
    """repr of an int, or its size when it has more digits than a message should hold."""
    if abs(value) < 10**30:
        return repr(value)
    return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
