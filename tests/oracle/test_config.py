"""config.json defaults, kind detection, validation and the JSON schema (spec clause CKPT-2)."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_numpy import ConfigError, default_config, tiny_config, validate_config
from reference_numpy.config import config_kind

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "spec" / "config.schema.json"

# Upstream constructor defaults, transcribed from the ClassificationAdaPerceiver signature.
UPSTREAM_DEFAULTS = {
    "max_latent_tokens": 256, "rope_theta": 10000, "ffn_ratio": 4.0, "qkv_bias": True,
    "proj_bias": True, "ls_init_values": 1e-6, "proj_drop": 0.0, "attn_drop": 0.0,
    "drop_path": 0.0, "head_drop": 0.0, "act_layer": "gelu", "norm_layer": "layernorm",
    "ffn_layer": "mlp", "attn_layer": "flex", "process_token_init": "learned",
    "block_mask": "block", "img_size": 224, "in_channels": 3, "patch_size": 16,
    "num_classes": 1000, "use_embed_ffn": False, "use_output_ffn": False,
}
NO_DEFAULT = ("embed_dim", "num_heads", "depth", "mask_token_grans", "mat_dims")


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_PATH.read_text())


def minimal(**extra):
    """A classification config with only the keys that have no upstream default."""
    return {"embed_dim": 16, "num_heads": 2, "depth": 2, "mask_token_grans": [2, 4],
            "mat_dims": [8, 16], **extra}


def problems_of(config):
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    return info.value.problems


# ------------------------------------------------------------------------------- defaults


def test_default_config_classification_has_every_key_at_upstream_default():
    """CKPT-2: every key, upstream defaults, published in1k-ft values for keys without one."""
    config = default_config()
    assert set(config) == set(UPSTREAM_DEFAULTS) | set(NO_DEFAULT)
    for key, value in UPSTREAM_DEFAULTS.items():
        assert config[key] == value and type(config[key]) is type(value), key
    assert (config["embed_dim"], config["num_heads"], config["depth"]) == (832, 13, 21)
    assert config["mask_token_grans"] == [32, 64, 96, 128, 192, 256]
    assert config["mat_dims"] == [416, 624, 832]
    assert config_kind(config) == "classification"


def test_default_config_distill_defaults():
    """CKPT-2: DistillAdaPerceiver defaults: embed_dim 768, 12 heads, depth 12, feat dim 768."""
    config = default_config("distill")
    assert set(config) == set(UPSTREAM_DEFAULTS) | set(NO_DEFAULT) | {"output_feat_dim"}
    assert (config["embed_dim"], config["num_heads"], config["depth"]) == (768, 12, 12)
    assert config["output_feat_dim"] == 768
    assert config["mat_dims"] == [384, 576, 768]  # the published 1/2, 3/4, 1 of embed_dim
    assert config_kind(config) == "distill"


def test_default_config_overrides_and_unknown_key():
    """CKPT-2: overrides replace defaults; an unknown key is an error naming it."""
    config = default_config(embed_dim=64, num_heads=4, attn_layer="full")
    assert (config["embed_dim"], config["num_heads"], config["attn_layer"]) == (64, 4, "full")
    assert config["mat_dims"] == [32, 48, 64]
    with pytest.raises(ConfigError, match="embed_dimm"):
        default_config(embed_dimm=64)
    with pytest.raises(ConfigError, match="output_feat_dim"):
        default_config("classification", output_feat_dim=10)
    with pytest.raises(ConfigError, match="kind"):
        default_config("segmentation")
    with pytest.raises(ConfigError, match="num_heads"):
        default_config(embed_dim=64, num_heads=5)


def test_default_mat_dims_follow_embed_dim():
    """CKPT-2: without mat_dims, default_config uses D/2, 3D/4, D (the published fractions)."""
    assert default_config(embed_dim=2, num_heads=1)["mat_dims"] == [1, 2]
    assert default_config(embed_dim=24, num_heads=2)["mat_dims"] == [12, 18, 24]
    assert default_config(embed_dim=24, num_heads=2, mat_dims=[5])["mat_dims"] == [5]
    with pytest.raises(ConfigError) as info:
        default_config(embed_dim="wide")
    assert info.value.problems == ["embed_dim must be an int >= 1, got 'wide'"]


def test_tiny_config_is_valid_for_both_kinds():
    """CKPT-2: the tiny test configs are complete and valid."""
    assert validate_config(tiny_config()) == tiny_config()
    assert tiny_config("distill")["output_feat_dim"] >= 1
    assert tiny_config(depth=1)["depth"] == 1


# ----------------------------------------------------------------------------- validation


def test_validate_fills_defaults_and_is_idempotent():
    """CKPT-2: absent keys take upstream defaults; validating twice changes nothing."""
    config = validate_config(minimal())
    assert {k: config[k] for k in UPSTREAM_DEFAULTS} == UPSTREAM_DEFAULTS
    assert validate_config(config) == config
    assert json.loads(json.dumps(config)) == config


def test_missing_required_keys_are_all_listed():
    """CKPT-2: every required key without a default is reported, for both kinds."""
    problems = problems_of({"ffn_ratio": 2.0})
    for key in NO_DEFAULT:
        assert any(f"missing required config key '{key}'" in p for p in problems), key
    assert len(problems) == len(NO_DEFAULT)
    distill_problems = problems_of({"output_feat_dim": 8})
    assert len(distill_problems) == 2
    assert all("mask_token_grans" in p or "mat_dims" in p for p in distill_problems)


def test_every_problem_is_reported_at_once():
    """CKPT-2: one ConfigError (a ValueError) lists all problems."""
    bad = minimal(embed_dim=18, num_heads=4, act_layer="relu", proj_drop=1.5, qkv_bias=1,
                  img_size=30, patch_size=8, mask_token_grans=[4, 2], extra_key=3)
    with pytest.raises(ValueError) as info:
        validate_config(bad)
    assert isinstance(info.value, ConfigError)
    text = str(info.value)
    for needle in ["extra_key", "divisible by num_heads", "act_layer 'relu' is unsupported",
                   "proj_drop", "qkv_bias must be a bool", "multiple of patch_size",
                   "strictly increasing"]:
        assert needle in text, needle
    assert len(info.value.problems) == 7


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"embed_dim": 18, "num_heads": 4}, "divisible by num_heads"),
        ({"embed_dim": 18, "num_heads": 2}, "must be even"),
        ({"embed_dim": True}, "embed_dim must be an int"),
        ({"embed_dim": 16.0}, "embed_dim must be an int"),
        ({"depth": 0}, "depth must be an int >= 1"),
        ({"num_classes": "10"}, "num_classes must be an int"),
        ({"max_latent_tokens": -1}, "max_latent_tokens"),
        ({"ffn_ratio": 0}, "ffn_ratio must be a real number > 0"),
        ({"ffn_ratio": 0.01}, "int(embed_dim * ffn_ratio)"),
        ({"ffn_ratio": float("inf")}, "ffn_ratio must be a real number > 0"),
        ({"ffn_ratio": float("nan")}, "ffn_ratio must be a real number > 0"),
        ({"rope_theta": float("inf")}, "rope_theta"),
        ({"ls_init_values": "1e-6"}, "ls_init_values"),
        ({"attn_drop": 1.0}, "attn_drop must be a real number in [0, 1)"),
        ({"drop_path": -0.1}, "drop_path"),
        ({"use_embed_ffn": 1}, "use_embed_ffn must be a bool"),
        ({"act_layer": "silu"}, "act_layer 'silu' is unsupported"),
        ({"norm_layer": "rmsnorm"}, "norm_layer 'rmsnorm' is unsupported"),
        ({"ffn_layer": "swiglu"}, "ffn_layer 'swiglu' is unsupported"),
        ({"attn_layer": "sdpa"}, "attn_layer 'sdpa' is unsupported"),
        ({"block_mask": "sliding"}, "block_mask 'sliding' is unsupported"),
        ({"process_token_init": "zeros"}, "process_token_init"),
        ({"img_size": 20, "patch_size": 8}, "multiple of patch_size"),
        ({"mask_token_grans": [4, 4]}, "strictly increasing"),
        ({"mask_token_grans": [0, 4]}, "mask_token_grans must be a list of ints >= 1"),
        ({"mask_token_grans": []}, "non-empty"),
        ({"mask_token_grans": None}, "mask_token_grans must be a list"),
        ({"mat_dims": [8, 17]}, "1..embed_dim"),
        ({"mat_dims": [0]}, "mat_dims must be a list of ints >= 1"),
        ({"mat_dims": [True]}, "mat_dims must be a list of ints >= 1"),
        ({"output_feat_dim": 0}, "output_feat_dim must be an int >= 1"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(overrides, needle):
    """CKPT-2: each invalid field or cross-field constraint is named in the error."""
    problems = problems_of(minimal(**overrides))
    assert any(needle in p for p in problems), problems


@pytest.mark.parametrize(
    "overrides",
    [
        {"ls_init_values": None},
        {"ls_init_values": 0},
        {"proj_drop": 0.5, "head_drop": 0.999},
        {"mask_token_grans": [], "block_mask": "none"},
        {"mask_token_grans": [], "block_mask": "causal"},
        {"mat_dims": []},
        {"attn_layer": "full", "process_token_init": "norm_randn"},
        {"rope_theta": 500000.0, "ffn_ratio": 2.57},
        {"embed_dim": np.int64(16), "depth": np.int32(3)},
    ],
)
def test_valid_values_are_accepted(overrides, schema):
    """CKPT-2: values inside the allowed ranges pass both validate_config and the schema."""
    config = validate_config(minimal(**overrides))
    assert all(type(config[k]) is int for k in ("embed_dim", "depth"))
    jsonschema.validate(config, schema)


# ------------------------------------------------------------------------------ the schema


def test_schema_is_valid_draft_2020_12_and_accepts_defaults(schema):
    """CKPT-2: spec/config.schema.json is a valid schema and default configs satisfy it."""
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for config in (default_config(), default_config("distill"), tiny_config(),
                   tiny_config("distill")):
        jsonschema.validate(config, schema)


def test_schema_defaults_and_keys_agree_with_config_module(schema):
    """CKPT-2: the schema (the spec) and reference_numpy.config (the code) do not drift."""
    from reference_numpy import config as cfg

    props = schema["properties"]
    assert set(props) == set(cfg.DISTILL_DEFAULTS)
    for key, default in cfg.CLASSIFICATION_DEFAULTS.items():
        if default is None:
            assert "default" not in props[key], key
        else:
            assert props[key]["default"] == default, key
    assert props["output_feat_dim"]["default"] == cfg.DISTILL_DEFAULTS["output_feat_dim"]
    kind_rule = schema["allOf"][0]
    assert kind_rule["if"] == {"required": ["output_feat_dim"]}
    for key, sub in kind_rule["then"]["properties"].items():
        assert sub["default"] == cfg.DISTILL_DEFAULTS[key], key
    assert set(schema["required"]) == set(cfg.REQUIRED_KEYS["distill"])
    assert set(schema["required"]) | set(kind_rule["else"]["required"]) == set(
        cfg.REQUIRED_KEYS["classification"])
    for key, allowed in cfg.CHOICES.items():
        assert props[key]["enum"] == list(allowed), key
    for key, sub in props.items():
        assert sub.get("description"), f"{key} has no description"


@pytest.mark.parametrize(
    "overrides",
    [{"act_layer": "relu"}, {"attn_layer": "sdpa"}, {"qkv_bias": 1}, {"depth": 0},
     {"proj_drop": 1.0}, {"mat_dims": [0]}, {"unknown": 1}, {"mask_token_grans": []},
     {"ls_init_values": "x"}, {"ffn_ratio": 0}],
)
def test_schema_rejects_what_validate_config_rejects(overrides, schema):
    """CKPT-2: for constraints the schema can express, both reject the same configs."""
    config = minimal(**overrides)
    with pytest.raises(ConfigError):
        validate_config(config)
    assert not jsonschema.Draft202012Validator(schema).is_valid(config)


@st.composite
def valid_configs(draw):
    heads = draw(st.integers(1, 4))
    head_dim = 2 * draw(st.integers(1, 8))
    embed_dim = heads * head_dim
    patch = draw(st.integers(1, 8))
    grans = sorted(draw(st.sets(st.integers(1, 64), min_size=1, max_size=5)))
    config = {
        "embed_dim": embed_dim, "num_heads": heads, "depth": draw(st.integers(1, 6)),
        "img_size": patch * draw(st.integers(1, 6)), "patch_size": patch,
        "mask_token_grans": grans,
        "mat_dims": sorted(draw(st.sets(st.integers(1, embed_dim), max_size=3))),
        "ffn_ratio": draw(st.sampled_from([1.0, 2.5, 2.57, 4.0])),
        "attn_layer": draw(st.sampled_from(["flex", "full"])),
        "block_mask": draw(st.sampled_from(["block", "causal", "none"])),
        "ls_init_values": draw(st.sampled_from([None, 0, 1e-6, 0.1])),
        "use_embed_ffn": draw(st.booleans()),
        "use_output_ffn": draw(st.booleans()),
    }
    if draw(st.booleans()):
        config["output_feat_dim"] = draw(st.integers(1, 32))
    return config


@given(valid_configs())
def test_generated_valid_configs_pass_validator_and_schema(config):
    """CKPT-2: configs satisfying every documented constraint are accepted by both."""
    schema = json.loads(SCHEMA_PATH.read_text())
    filled = validate_config(config)
    assert config_kind(filled) == ("distill" if "output_feat_dim" in config else "classification")
    assert {k: filled[k] for k in config} == config
    jsonschema.validate(filled, schema)
    jsonschema.validate(config, schema)
