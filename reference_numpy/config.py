"""config.json of an AdaPerceiver checkpoint: defaults, kind detection and validation.

Spec clause CKPT-2 (``spec/checkpoint.md``; the machine-readable form is
``spec/config.schema.json``). A config is a plain dict holding the keyword
arguments of the upstream constructor, all of them:

* ``ClassificationAdaPerceiver``: the keys of ``CLASSIFICATION_DEFAULTS``.
* ``DistillAdaPerceiver``: the same keys plus ``output_feat_dim``.

The kind is ``"distill"`` iff ``"output_feat_dim"`` is a key of the config.
Keys without an upstream default (``REQUIRED_KEYS``) must be present in a
config.json; ``default_config`` fills them with the published in1k-ft values.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

KINDS = ("classification", "distill")

ACTIVATIONS = ("gelu",)
NORMS = ("layernorm",)
FFNS = ("mlp",)
ATTENTION_LAYERS = ("flex", "full")
PROCESS_TOKEN_INITS = ("learned", "norm_randn")
BLOCK_MASKS = ("block", "causal", "none")

# Upstream constructor defaults. ``None`` marks a key without a usable upstream
# default: for mask_token_grans / mat_dims upstream defaults to None and then
# crashes on ``list(None)``, so a config.json must give them.
CLASSIFICATION_DEFAULTS: dict[str, Any] = {
    "embed_dim": None,
    "num_heads": None,
    "depth": None,
    "max_latent_tokens": 256,
    "rope_theta": 10000,
    "ffn_ratio": 4.0,
    "qkv_bias": True,
    "proj_bias": True,
    "ls_init_values": 1e-6,
    "proj_drop": 0.0,
    "attn_drop": 0.0,
    "drop_path": 0.0,
    "head_drop": 0.0,
    "act_layer": "gelu",
    "norm_layer": "layernorm",
    "ffn_layer": "mlp",
    "attn_layer": "flex",
    "process_token_init": "learned",
    "block_mask": "block",
    "mask_token_grans": None,
    "mat_dims": None,
    "img_size": 224,
    "in_channels": 3,
    "patch_size": 16,
    "num_classes": 1000,
    "use_embed_ffn": False,
    "use_output_ffn": False,
}

DISTILL_DEFAULTS: dict[str, Any] = {
    **CLASSIFICATION_DEFAULTS,
    "embed_dim": 768,
    "num_heads": 12,
    "depth": 12,
    "output_feat_dim": 768,
}

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    kind: tuple(key for key, value in defaults.items() if value is None)
    for kind, defaults in (("classification", CLASSIFICATION_DEFAULTS),
                           ("distill", DISTILL_DEFAULTS))
}

# Values of the published in1k-ft model, used by default_config for the keys
# that have no upstream default. Its mat_dims [416, 624, 832] are D/2, 3D/4 and D:
# default_config keeps those fractions of the config's own embed_dim (default_mat_dims).
PUBLISHED_VALUES: dict[str, Any] = {
    "embed_dim": 832,
    "num_heads": 13,
    "depth": 21,
    "mask_token_grans": [32, 64, 96, 128, 192, 256],
}

MAX_SIZE = 2**31 - 1  # LIM-1: the largest size (dimension, count) a config may give
MAX_TOKENS = 65536  # LIM-2: the largest number of latent tokens (max_latent_tokens, N)
_POSITIVE_INTS = ("embed_dim", "num_heads", "depth", "max_latent_tokens", "img_size",
                  "in_channels", "patch_size", "num_classes", "output_feat_dim")
_BOOLS = ("qkv_bias", "proj_bias", "use_embed_ffn", "use_output_ffn")
_DROPOUTS = ("proj_drop", "attn_drop", "drop_path", "head_drop")
CHOICES = {
    "act_layer": ACTIVATIONS,
    "norm_layer": NORMS,
    "ffn_layer": FFNS,
    "attn_layer": ATTENTION_LAYERS,
    "process_token_init": PROCESS_TOKEN_INITS,
    "block_mask": BLOCK_MASKS,
}
# A small but complete model for tests and demos: every code path of the
# published model (embed FFN, non-integer ffn_ratio, several granularities).
TINY_OVERRIDES: dict[str, Any] = {
    "embed_dim": 16,
    "num_heads": 2,
    "depth": 3,
    "max_latent_tokens": 16,
    "ffn_ratio": 2.5,
    "mask_token_grans": [2, 4, 8, 16],
    "mat_dims": [4, 8, 16],
    "img_size": 16,
    "patch_size": 4,
    "num_classes": 10,
    "use_embed_ffn": True,
}
TINY_DISTILL_OVERRIDES: dict[str, Any] = {**TINY_OVERRIDES, "output_feat_dim": 12}

# Values upstream could build (via timm registries) but the published models never use.
_UNSUPPORTED_NOTE = {
    "act_layer": "only the published model's activation is supported",
    "norm_layer": "only the published model's norm is supported",
    "ffn_layer": "only the published model's FFN is supported",
}


class ConfigError(ValueError):
    """A config is invalid; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid AdaPerceiver config:\n  - " + "\n  - ".join(self.problems))


def config_kind(config: Mapping[str, Any]) -> str:
    """``"distill"`` iff the config has ``output_feat_dim``, else ``"classification"``."""
    return "distill" if "output_feat_dim" in config else "classification"


def default_config(kind: str = "classification", **overrides: Any) -> dict[str, Any]:
    """Every config.json key at its upstream default, then ``overrides``; validated.

    Keys without an upstream default take the published in1k-ft values
    (``PUBLISHED_VALUES``); mat_dims, unless given, is ``default_mat_dims(embed_dim)``,
    which stays valid for any embed_dim and is the published [416, 624, 832] for
    embed_dim 832. An unknown override key is a ``ConfigError``.
    """
    if kind not in KINDS:
        raise ConfigError([f"kind must be one of {list(KINDS)}, got {kind!r}"])
    defaults = _defaults_for(kind)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError([f"unknown config key {key!r} for a {kind} model (allowed: "
                           f"{', '.join(defaults)})" for key in unknown])
    config = {key: PUBLISHED_VALUES.get(key) if value is None else value
              for key, value in defaults.items()}
    config.update(overrides)
    if config["mat_dims"] is None:
        D = config["embed_dim"]
        config["mat_dims"] = default_mat_dims(D) if _is_int(D) else []  # bad D is reported
    return validate_config(config)


def default_mat_dims(embed_dim: int) -> list[int]:
    """The published widths' fractions of embed_dim: [D // 2, 3 * D // 4, D] (positive, unique)."""
    D = embed_dim
    return sorted({m for m in (D // 2, 3 * D // 4, D) if m >= 1})


def tiny_config(kind: str = "classification", **overrides: Any) -> dict[str, Any]:
    """``default_config`` with ``TINY_OVERRIDES`` (D=16, H=2, depth 3, 16x16 images, P=4)."""
    tiny = TINY_DISTILL_OVERRIDES if kind == "distill" else TINY_OVERRIDES
    return default_config(kind, **{**tiny, **overrides})


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill upstream defaults and check every key; return a new dict in canonical key order.

    Raises ``ConfigError`` listing every problem at once: not a mapping, unknown
    keys, missing required keys, wrong types (bool is never an int), values out
    of range, unsupported layer names and cross-field constraints
    (embed_dim % num_heads == 0, even head dim for RoPE, img_size % patch_size == 0,
    mat_dims <= embed_dim, non-empty mask_token_grans for the block mask).
    Integers are returned as ``int`` and reals as ``float``.
    """
    if not isinstance(config, Mapping):
        raise ConfigError([f"config must be a mapping (dict), got {type(config).__name__}"])
    kind = config_kind(config)
    defaults = _defaults_for(kind)
    problems = [f"unknown config key {key!r} for a {kind} model"
                for key in config if key not in defaults]
    missing = {key for key in REQUIRED_KEYS[kind] if key not in config}
    problems += [f"missing required config key {key!r} (it has no default)"
                 for key in sorted(missing)]
    filled = {key: config.get(key, default) for key, default in defaults.items()}

    for key in _POSITIVE_INTS:
        if key in filled and key not in missing:
            maximum = MAX_TOKENS if key == "max_latent_tokens" else MAX_SIZE
            filled[key] = _check_int(filled[key], key, problems, minimum=1, maximum=maximum)
    filled["rope_theta"] = _check_real(filled["rope_theta"], "rope_theta", problems,
                                       "a real number > 0", lambda v: v > 0)
    filled["ffn_ratio"] = _check_real(filled["ffn_ratio"], "ffn_ratio", problems,
                                      "a real number > 0", lambda v: v > 0)
    if filled["ls_init_values"] is not None:
        filled["ls_init_values"] = _check_real(
            filled["ls_init_values"], "ls_init_values", problems,
            "a finite real number or null (0 or null: no LayerScale)", lambda v: True)
    for key in _DROPOUTS:
        filled[key] = _check_real(filled[key], key, problems, "a real number in [0, 1)",
                                  lambda v: 0 <= v < 1)
    for key in _BOOLS:
        if not isinstance(filled[key], bool):
            problems.append(f"{key} must be a bool (true/false), got {filled[key]!r}")
    for key, allowed in CHOICES.items():
        value = filled[key]
        if value not in allowed:
            note = f" ({_UNSUPPORTED_NOTE[key]})" if key in _UNSUPPORTED_NOTE else ""
            problems.append(f"{key} {value!r} is unsupported: allowed {list(allowed)}{note}")
    for key in ("mask_token_grans", "mat_dims"):
        if key not in missing:
            filled[key] = _check_int_list(filled[key], key, problems)
    _check_relations(filled, problems)
    if problems:
        raise ConfigError(problems)
    return filled


def _defaults_for(kind: str) -> dict[str, Any]:
    return dict(DISTILL_DEFAULTS if kind == "distill" else CLASSIFICATION_DEFAULTS)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(value: Any, key: str, problems: list[str], *, minimum: int, maximum: int) -> Any:
    """An int in minimum..maximum (LIM-1 for the upper bound)."""
    if _is_int(value) and value > maximum:
        problems.append(f"{key} must be an int in {minimum}..{maximum}, got {_describe_int(value)}")
        return value
    if not _is_int(value) or value < minimum:
        shown = _describe_int(value) if _is_int(value) else repr(value)
        problems.append(f"{key} must be an int >= {minimum}, got {shown}")
        return value
    return int(value)


def _describe_int(value: int) -> str:
    """The int, or only its number of digits when it is too long to show."""
    if -10**30 < value < 10**30:
        return repr(value)
    digits = int(int(value).bit_length() * 0.30103) + 1
    return f"an int of about {digits} digits"


def _check_real(value: Any, key: str, problems: list[str], allowed: str, ok) -> Any:
    if not _is_real(value) or not math.isfinite(value) or not ok(value):
        problems.append(f"{key} must be {allowed}, got {value!r}")
        return value
    return int(value) if _is_int(value) else float(value)


def _check_int_list(value: Any, key: str, problems: list[str]) -> Any:
    """A list of positive ints, strictly increasing for mask_token_grans."""
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v >= 1 for v in value):
        problems.append(f"{key} must be a list of ints >= 1, got {value!r}")
        return value
    ints = [int(v) for v in value]
    if key == "mask_token_grans" and any(a >= b for a, b in zip(ints, ints[1:], strict=False)):
        problems.append(f"mask_token_grans must be strictly increasing, got {ints}")
    return ints


def _check_relations(c: dict[str, Any], problems: list[str]) -> None:
    """Cross-field constraints; each is checked only when its fields are valid."""
    D, H = c["embed_dim"], c["num_heads"]
    if _is_int(D) and _is_int(H) and D >= 1 and H >= 1:
        if D % H:
            problems.append(f"embed_dim ({D}) must be divisible by num_heads ({H})")
        elif (D // H) % 2:
            problems.append(f"head dim embed_dim/num_heads = {D // H} must be even (RoPE "
                            "rotates channel pairs)")
    P, img = c["patch_size"], c["img_size"]
    if _is_int(P) and _is_int(img) and P >= 1 and img % P:
        problems.append(f"img_size ({img}) must be a multiple of patch_size ({P})")
    ratio = c["ffn_ratio"]
    size_ok = _is_int(D) and 1 <= D <= MAX_SIZE
    if size_ok and _is_real(ratio) and 0 < ratio < math.inf:
        hidden = D * float(ratio)  # F before int(); inf if the product overflows (LIM-1)
        if hidden < 1:
            problems.append(f"int(embed_dim * ffn_ratio) = int({D} * {ratio}) must be >= 1")
        elif hidden >= MAX_SIZE + 1:
            problems.append(f"int(embed_dim * ffn_ratio) = int({D} * {ratio}) must be at most "
                            f"{MAX_SIZE}")
    mat_dims = c["mat_dims"]
    if size_ok and isinstance(mat_dims, list) and all(map(_is_int, mat_dims)):
        too_big = [m for m in mat_dims if m > D]
        if too_big:
            problems.append(f"mat_dims must be ints in 1..embed_dim ({D}), got {too_big}")
    grans = c["mask_token_grans"]
    if c["block_mask"] == "block" and isinstance(grans, list) and not grans:
        problems.append('mask_token_grans must be non-empty when block_mask is "block"')
