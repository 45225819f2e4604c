"""config.json of an AdaPerceiver checkpoint: the constructor keywords, their defaults and checks.

Spec clause CKPT-2. The constructor of ``ClassificationAdaPerceiver`` takes exactly the
keys of ``CLASSIFICATION_DEFAULTS``; ``DistillAdaPerceiver`` takes those of
``DISTILL_DEFAULTS`` (one more: ``output_feat_dim``). Defaults are the upstream
constructor defaults; ``REQUIRED`` marks keys without a usable upstream default.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

REQUIRED = object()  # sentinel: the key has no default and must be given

CLASSIFICATION_DEFAULTS: dict[str, Any] = {
    "embed_dim": REQUIRED,
    "num_heads": REQUIRED,
    "depth": REQUIRED,
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
    "mask_token_grans": REQUIRED,  # upstream default None crashes on list(None)
    "mat_dims": REQUIRED,
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

CHOICES: dict[str, tuple[str, ...]] = {
    "act_layer": ("gelu",),
    "norm_layer": ("layernorm",),
    "ffn_layer": ("mlp",),
    "attn_layer": ("flex", "full"),
    "process_token_init": ("learned", "norm_randn"),
    "block_mask": ("block", "causal", "none"),
}
_POSITIVE_INTS = ("embed_dim", "num_heads", "depth", "max_latent_tokens", "img_size",
                  "in_channels", "patch_size", "num_classes", "output_feat_dim")
_BOOLS = ("qkv_bias", "proj_bias", "use_embed_ffn", "use_output_ffn")
_DROPOUTS = ("proj_drop", "attn_drop", "drop_path", "head_drop")


class ConfigError(ValueError):
    """The constructor keywords (config.json) are invalid; lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid AdaPerceiver config:\n  - " + "\n  - ".join(self.problems))


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers; bool is not an int."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for Python and NumPy reals (ints included); bool is not a real."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def resolve_config(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``defaults`` with ``given`` and check every key (CKPT-2).

    Returns a new dict in canonical key order with ints as ``int`` and reals as
    ``float``. Raises ``ConfigError`` listing every unknown key, missing required
    key, wrong type, out-of-range value and violated cross-field constraint.
    """
    problems = [f"unknown config key {key!r} (allowed: {', '.join(defaults)})"
                for key in given if key not in defaults]
    config = {key: given.get(key, default) for key, default in defaults.items()}
    missing = {key for key, value in config.items() if value is REQUIRED}
    problems += [f"missing required config key {key!r} (it has no default)"
                 for key in sorted(missing)]
    for key in _POSITIVE_INTS:
        if key in config and key not in missing:
            config[key] = _int_at_least(config[key], key, 1, problems)
    config["rope_theta"] = _real(config["rope_theta"], "rope_theta", "a real number > 0",
                                 lambda v: v > 0, problems)
    config["ffn_ratio"] = _real(config["ffn_ratio"], "ffn_ratio", "a real number > 0",
                                lambda v: v > 0, problems)
    if config["ls_init_values"] is not None:
        config["ls_init_values"] = _real(
            config["ls_init_values"], "ls_init_values",
            "a finite real number or null (0 or null: no LayerScale)", lambda v: True, problems)
    for key in _DROPOUTS:
        config[key] = _real(config[key], key, "a real number in [0, 1)",
                            lambda v: 0 <= v < 1, problems)
    for key in _BOOLS:
        if not isinstance(config[key], bool):
            problems.append(f"{key} must be a bool (true/false), got {config[key]!r}")
    for key, allowed in CHOICES.items():
        if config[key] not in allowed:
            problems.append(f"{key} {config[key]!r} is unsupported: allowed {list(allowed)}")
    for key in ("mask_token_grans", "mat_dims"):
        if key not in missing:
            config[key] = _int_list(config[key], key, problems)
    _check_relations(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _int_at_least(value: Any, key: str, minimum: int, problems: list[str]) -> Any:
    if not is_int(value) or value < minimum:
        problems.append(f"{key} must be an int >= {minimum}, got {value!r}")
        return value
    return int(value)


def _real(value: Any, key: str, allowed: str, ok, problems: list[str]) -> Any:
    if not is_real(value) or not math.isfinite(value) or not ok(value):
        problems.append(f"{key} must be {allowed}, got {value!r}")
        return value
    return int(value) if is_int(value) else float(value)


def _int_list(value: Any, key: str, problems: list[str]) -> Any:
    if not isinstance(value, (list, tuple)) or not all(is_int(v) and v >= 1 for v in value):
        problems.append(f"{key} must be a list of ints >= 1, got {value!r}")
        return value
    ints = [int(v) for v in value]
    if key == "mask_token_grans" and any(a >= b for a, b in pairwise(ints)):
        problems.append(f"mask_token_grans must be strictly increasing, got {ints}")
    return ints


def _check_relations(c: dict[str, Any], problems: list[str]) -> None:
    """Cross-field constraints, each checked only when its fields are valid."""
    D, H = c["embed_dim"], c["num_heads"]
    if is_int(D) and is_int(H) and D >= 1 and H >= 1:
        if D % H:
            problems.append(f"embed_dim ({D}) must be divisible by num_heads ({H})")
        elif (D // H) % 2:
            problems.append(f"head dim embed_dim/num_heads = {D // H} must be even "
                            "(RoPE rotates channel pairs)")
    P, img = c["patch_size"], c["img_size"]
    if is_int(P) and is_int(img) and P >= 1 and img % P:
        problems.append(f"img_size ({img}) must be a multiple of patch_size ({P})")
    ratio = c["ffn_ratio"]
    if is_int(D) and D >= 1 and is_real(ratio) and ratio > 0 and int(D * ratio) < 1:
        problems.append(f"int(embed_dim * ffn_ratio) = int({D} * {ratio}) must be >= 1")
    mat_dims = c["mat_dims"]
    if is_int(D) and isinstance(mat_dims, list) and all(map(is_int, mat_dims)):
        too_big = [m for m in mat_dims if m > D]
        if too_big:
            problems.append(f"mat_dims must be ints in 1..embed_dim ({D}), got {too_big}")
    grans = c["mask_token_grans"]
    if c["block_mask"] == "block" and isinstance(grans, list) and not grans:
        problems.append('mask_token_grans must be non-empty when block_mask is "block"')
