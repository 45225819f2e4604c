"""Checkpoint loading and saving of the PyTorch model (CKPT-1..6, CKPT-2 config checks)."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torch_helpers import checkpoint, images, model_class, rel_err, run, tiny_config

import reference_numpy as rn
from adaperceiver import (
    CheckpointError,
    ClassificationAdaPerceiver,
    ConfigError,
    DistillAdaPerceiver,
)

CONFIG_VARIANTS = [
    {},
    {"use_embed_ffn": False, "use_output_ffn": True},
    {"ls_init_values": 0.0, "qkv_bias": False},
    {"ls_init_values": None, "proj_bias": False},
]


@pytest.mark.parametrize("kind", ["classification", "distill"])
@pytest.mark.parametrize("overrides", CONFIG_VARIANTS)
def test_state_dict_keys_and_shapes_match_the_published_layout(kind, overrides):
    """CKPT-3: state_dict() keys and shapes equal reference_numpy.expected_shapes, no buffers
    beyond them (RoPE tables and masks are not persistent)."""
    config = tiny_config(kind, **overrides)
    model = model_class(config)(**config)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == rn.expected_shapes(config)


def test_published_size_layout():
    """CKPT-3: the published in1k-ft config gives the published key set and shapes."""
    config = rn.default_config("classification", ffn_ratio=2.57, use_embed_ffn=True)
    with torch.device("meta"):
        model = ClassificationAdaPerceiver(**config)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == rn.expected_shapes(config)
    assert got["blocks.20.ffn.fc1.weight"] == (2138, 832)
    assert got["patch_embed.pos_embed"] == (1, 196, 832)


@pytest.mark.parametrize("kind", ["classification", "distill"])
def test_save_load_round_trip(kind, tmp_path):
    """CKPT-1, CKPT-2: save_pretrained writes config.json with every constructor keyword and
    model.safetensors with the published keys; from_pretrained gives identical outputs; the
    oracle loads the saved checkpoint and agrees."""
    config = tiny_config(kind)
    with checkpoint(config, seed=2) as (path, _):
        model = model_class(config).from_pretrained(path)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == config
    again = model_class(config).from_pretrained(tmp_path)
    x = images(2, config)
    torch.testing.assert_close(run(again, x, torch.float32).logits,
                               run(model, x, torch.float32).logits, rtol=1e-6, atol=1e-6)
    ref_config, ref_weights = rn.load_checkpoint(tmp_path)
    assert ref_config == config
    ref = rn.trace(ref_weights, ref_config, x)
    assert rel_err(run(again.double(), x).logits, ref.logits) <= 1e-10


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_half_precision_checkpoints_load_as_float32(dtype):
    """CKPT-4: float16, bfloat16 (and float64) tensors are decoded exactly and cast to
    float32; results match the oracle on the same decoded weights."""
    config = tiny_config()
    with checkpoint(config, seed=3, dtype=dtype) as (path, weights):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value.double(), torch.from_numpy(weights[key]).float().double())
    x = images(2, config)
    assert rel_err(run(model, x, torch.float32).logits, rn.classify(weights, config, x)) <= 1e-4


def _write(path, config, tensors):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file(tensors, str(path / "model.safetensors"))


def test_mismatched_checkpoint_lists_every_problem(tmp_path):
    """CKPT-5: one CheckpointError lists a missing, an unexpected, a mis-shaped, a non-finite
    and a wrong-dtype tensor together."""
    config = tiny_config()
    state = ClassificationAdaPerceiver(**config).state_dict()
    state = {k: v.clone() for k, v in state.items()}
    del state["blocks.0.attn.q.weight"]
    state["blocks.0.extra"] = torch.zeros(3)
    state["blocks.1.ffn.fc1.weight"] = torch.zeros(7, 16)
    state["read_head.src_norm.bias"][0] = float("nan")
    state["output_latents.token"] = torch.zeros(1, 16, dtype=torch.int32)
    _write(tmp_path, config, state)
    with pytest.raises(CheckpointError) as err:
        ClassificationAdaPerceiver.from_pretrained(tmp_path)
    message = str(err.value)
    for needle in ["missing tensor 'blocks.0.attn.q.weight'", "unexpected tensor 'blocks.0.extra'",
                   "'blocks.1.ffn.fc1.weight' has shape (7, 16), expected (40, 16)",
                   "'read_head.src_norm.bias' has 1 non-finite", "'output_latents.token' has "
                   "unsupported dtype"]:
        assert needle in message
    assert len(err.value.problems) == 5


def test_bad_config_json_lists_every_problem(tmp_path):
    """CKPT-2, CKPT-5: unknown keys and bad values in config.json are all reported."""
    config = {**tiny_config(), "num_heads": 3, "colour": "blue", "block_mask": "diagonal"}
    _write(tmp_path, config, {"x": torch.zeros(1)})
    with pytest.raises(CheckpointError) as err:
        ClassificationAdaPerceiver.from_pretrained(tmp_path)
    text = str(err.value)
    assert "'colour'" in text and "divisible by num_heads" in text and "'diagonal'" in text


@pytest.mark.parametrize("damage", ["truncate", "header", "missing_weights", "missing_config",
                                    "bad_json"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    """CKPT-1, CKPT-5: a truncated or corrupt safetensors file, a missing file or invalid
    config.json raise CheckpointError naming the file."""
    config = tiny_config()
    with checkpoint(config) as (path, _):
        blob = (path / "model.safetensors").read_bytes()
    _write(tmp_path, config, {})
    target = tmp_path / "model.safetensors"
    if damage == "truncate":
        target.write_bytes(blob[: len(blob) // 2])
    elif damage == "header":
        target.write_bytes(struct.pack("<Q", 10) + b"not json!!" + blob[18:])
    elif damage == "missing_weights":
        target.unlink()
    elif damage == "missing_config":
        target.write_bytes(blob)
        (tmp_path / "config.json").unlink()
    else:
        target.write_bytes(blob)
        (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model.safetensors|config.json"):
        ClassificationAdaPerceiver.from_pretrained(tmp_path)


def test_kind_mismatch_is_reported(tmp_path):
    """CKPT-2, CKPT-3: a distill checkpoint does not load as a classifier (unknown config
    key output_feat_dim) and a classifier config does not fill a distill model's keys."""
    config = tiny_config("distill")
    with checkpoint(config) as (path, _):
        with pytest.raises(CheckpointError, match="output_feat_dim"):
            ClassificationAdaPerceiver.from_pretrained(path)
    classifier = tiny_config()
    with checkpoint(classifier) as (path, _):
        with pytest.raises(CheckpointError, match="missing tensor 'write_head_feat"):
            DistillAdaPerceiver.from_pretrained(path)


def test_unreachable_hub_id_is_a_clear_error(tmp_path):
    """CKPT-1: a hub id that cannot be fetched (offline: local_files_only and an empty
    cache) raises OSError naming the repo and the file."""
    with pytest.raises(OSError, match="config.json of 'pjajal/adaperceiver-v1-in1k-ft'"):
        ClassificationAdaPerceiver.from_pretrained("pjajal/adaperceiver-v1-in1k-ft",
                                                   cache_dir=str(tmp_path),
                                                   local_files_only=True)


def test_constructor_rejects_unknown_and_bad_keywords():
    """CKPT-2: the constructor takes exactly the config.json keys; every problem is listed."""
    with pytest.raises(ConfigError) as err:
        ClassificationAdaPerceiver(**{**tiny_config(), "embed_dims": 8, "depth": 0,
                                      "qkv_bias": 1, "attn_layer": "sparse"})
    assert len(err.value.problems) == 4
    with pytest.raises(ConfigError, match="missing required config key 'embed_dim'"):
        ClassificationAdaPerceiver(num_heads=2, depth=1, mask_token_grans=[2], mat_dims=[2])
    distill = DistillAdaPerceiver(mask_token_grans=[4], mat_dims=[8], depth=1, num_heads=2,
                                  embed_dim=8, output_feat_dim=3, img_size=8, patch_size=4)
    assert distill.config["output_feat_dim"] == 3


@pytest.mark.parametrize("ratio", [float("inf"), float("nan"), -1.0])
def test_constructor_rejects_non_finite_ffn_ratio(ratio):
    """CKPT-2: ffn_ratio must be a finite real > 0: a ConfigError naming it, never an
    OverflowError from int(D * inf)."""
    with pytest.raises(ConfigError, match="ffn_ratio must be a real number > 0"):
        ClassificationAdaPerceiver(**{**tiny_config(), "ffn_ratio": ratio})


@pytest.mark.parametrize("kind", ["classification", "distill"])
def test_loaded_model_holds_the_checkpoint_as_trainable_parameters(kind):
    """CKPT-3/CKPT-4: from_pretrained (built on the meta device, then assigned) gives real
    CPU float32 nn.Parameters equal to the stored tensors, trainable, and no meta tensor left."""
    config = tiny_config(kind)
    with checkpoint(config, seed=4) as (path, weights):
        model = model_class(config).from_pretrained(path)
    params = dict(model.named_parameters())
    assert set(params) == set(weights)
    for key, p in params.items():
        assert isinstance(p, torch.nn.Parameter) and p.requires_grad, key
        assert p.device.type == "cpu" and p.dtype == torch.float32, key
        torch.testing.assert_close(p.detach(), torch.from_numpy(weights[key]).float(),
                                   rtol=0, atol=0)
    assert not any(t.is_meta for t in model.state_dict().values())
