"""Checkpoint layout, safetensors I/O and loader validation (spec clauses CKPT-1, CKPT-3..6)."""

import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

from reference_numpy import (
    CheckpointError,
    default_config,
    expected_shapes,
    load_checkpoint,
    random_weights,
    save_checkpoint,
    tiny_config,
)
from reference_numpy.bfloat16 import bfloat16_bits_to_float32, float_to_bfloat16_bits
from reference_numpy.checkpoint import write_safetensors

REPO_ROOT = Path(__file__).resolve().parents[2]

# A small config whose full layout is written out by hand below (D=8, F=int(8*2.5)=20,
# P=4, M=(8/4)^2=4, C=3, one block).
SMALL = dict(embed_dim=8, num_heads=2, depth=1, ffn_ratio=2.5, img_size=8, patch_size=4,
             num_classes=3, mask_token_grans=[2, 4], mat_dims=[4, 8])


def fusion(prefix):
    shapes = {f"{prefix}.{n}_norm.{p}": (8,) for n in ("src", "snk") for p in ("weight", "bias")}
    for name in ("q", "k", "v", "proj"):
        shapes[f"{prefix}.cattn.{name}.weight"] = (8, 8)
        shapes[f"{prefix}.cattn.{name}.bias"] = (8,)
    return shapes


SMALL_CLASSIFICATION_SHAPES = {
    "process_latents.token": (8,),
    "output_latents.token": (1, 8),
    "patch_embed.embed.proj.weight": (8, 3, 4, 4),
    "patch_embed.embed.proj.bias": (8,),
    "patch_embed.pos_embed": (1, 4, 8),
    **fusion("read_head"),
    **fusion("write_head"),
    "blocks.0.norm1.weight": (8,), "blocks.0.norm1.bias": (8,),
    **{f"blocks.0.attn.{n}.{p}": (8, 8) if p == "weight" else (8,)
       for n in ("q", "k", "v", "proj") for p in ("weight", "bias")},
    "blocks.0.ls1.gamma": (8,),
    "blocks.0.norm2.weight": (8,), "blocks.0.norm2.bias": (8,),
    "blocks.0.ffn.fc1.weight": (20, 8), "blocks.0.ffn.fc1.bias": (20,),
    "blocks.0.ffn.fc2.weight": (8, 20), "blocks.0.ffn.fc2.bias": (8,),
    "blocks.0.ls2.gamma": (8,),
    "output_adapter.ffn.weight": (3, 8),
    "output_adapter.ffn.bias": (3,),
}


def write_tiny(directory, *, dtype="float32", config=None, seed=0):
    config = config or tiny_config()
    weights = random_weights(config, seed=seed)
    save_checkpoint(directory, config, weights, dtype=dtype)
    return config, weights


def load_problems(path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def read_header(path):
    """Independent minimal safetensors header parser: (header dict, data offset)."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), 8 + n


# ------------------------------------------------------------------------ layout (CKPT-3)


def test_expected_shapes_small_classification_exact():
    """CKPT-3: every key and shape of a small classification model, written out by hand."""
    assert expected_shapes(default_config(**SMALL)) == SMALL_CLASSIFICATION_SHAPES


def test_expected_shapes_small_distill_adds_feature_branch():
    """CKPT-3: the distill model adds output_latents_feat, write_head_feat, output_adapter_feat."""
    shapes = expected_shapes(default_config("distill", **SMALL, output_feat_dim=6))
    extra = {
        "output_latents_feat.proj.weight": (8, 8), "output_latents_feat.proj.bias": (8,),
        **fusion("write_head_feat"),
        "output_adapter_feat.norm.weight": (8,), "output_adapter_feat.norm.bias": (8,),
        "output_adapter_feat.ffn.fc1.weight": (20, 8), "output_adapter_feat.ffn.fc1.bias": (20,),
        "output_adapter_feat.ffn.fc2.weight": (6, 20), "output_adapter_feat.ffn.fc2.bias": (6,),
    }
    assert shapes == {**SMALL_CLASSIFICATION_SHAPES, **extra}


def test_expected_shapes_flags():
    """CKPT-3: qkv_bias, proj_bias, ls_init_values, use_embed_ffn, use_output_ffn select keys."""
    base = set(SMALL_CLASSIFICATION_SHAPES)
    no_qkv = expected_shapes(default_config(**SMALL, qkv_bias=False))
    qkv_biases = {k for k in base if k.endswith((".q.bias", ".k.bias", ".v.bias"))}
    assert len(qkv_biases) == 9  # read_head, write_head, blocks.0
    assert set(no_qkv) == base - qkv_biases
    no_proj = expected_shapes(default_config(**SMALL, proj_bias=False))
    assert set(no_proj) == base - {k for k in base if k.endswith(".proj.bias") and "embed" not in k}
    assert "patch_embed.embed.proj.bias" in no_proj  # the conv bias does not follow proj_bias
    for off in (0, 0.0, None):
        no_ls = expected_shapes(default_config(**SMALL, ls_init_values=off))
        assert set(no_ls) == base - {"blocks.0.ls1.gamma", "blocks.0.ls2.gamma"}
    embed = expected_shapes(default_config(**SMALL, use_embed_ffn=True))
    assert set(embed) - base == {"patch_embed.norm.weight", "patch_embed.norm.bias",
                                 "patch_embed.ffn.fc1.weight", "patch_embed.ffn.fc1.bias",
                                 "patch_embed.ffn.fc2.weight", "patch_embed.ffn.fc2.bias"}
    assert embed["patch_embed.ffn.fc1.weight"] == (20, 8)
    assert embed["patch_embed.ffn.fc2.weight"] == (8, 20)
    out = expected_shapes(default_config(**SMALL, use_output_ffn=True))
    assert {k: v for k, v in out.items() if k.startswith("output_adapter")} == {
        "output_adapter.norm.weight": (8,), "output_adapter.norm.bias": (8,),
        "output_adapter.ffn.fc1.weight": (20, 8), "output_adapter.ffn.fc1.bias": (20,),
        "output_adapter.ffn.fc2.weight": (3, 20), "output_adapter.ffn.fc2.bias": (3,),
    }


def test_expected_shapes_published_in1k_ft():
    """CKPT-3: published in1k-ft sizes: F = int(832 * 2.57) = 2138, M = 14^2, 21 blocks."""
    config = default_config(ffn_ratio=2.57, use_embed_ffn=True)
    shapes = expected_shapes(config)
    assert shapes["blocks.20.ffn.fc1.weight"] == (2138, 832)
    assert shapes["blocks.0.ffn.fc2.weight"] == (832, 2138)
    assert shapes["patch_embed.embed.proj.weight"] == (832, 3, 16, 16)
    assert shapes["patch_embed.pos_embed"] == (1, 196, 832)
    assert shapes["output_adapter.ffn.weight"] == (1000, 832)
    assert "blocks.21.norm1.weight" not in shapes
    # 5 embedding/token keys + 6 embed-FFN keys + 2 * 12 read/write + 21 * 18 block + 2 head
    assert len(shapes) == 5 + 6 + 24 + 21 * 18 + 2


@pytest.mark.parametrize(
    ("embed_dim", "ffn_ratio", "hidden"),
    [(8, 2.6, 20), (100, 0.57, 56), (832, 2.57, 2138), (16, 4.0, 64)],
)
def test_ffn_width_truncates_the_binary64_product(embed_dim, ffn_ratio, hidden):
    """CKPT-3: F = int(D * ffn_ratio) in binary64: 8 * 2.6 -> 20; 100 * 0.57 = 56.99.. -> 56."""
    config = default_config(**SMALL | {"embed_dim": embed_dim, "num_heads": 2,
                                       "ffn_ratio": ffn_ratio, "mat_dims": [embed_dim]},
                            use_embed_ffn=True, use_output_ffn=True)
    shapes = expected_shapes(config)
    for prefix in ("patch_embed.ffn", "blocks.0.ffn", "output_adapter.ffn"):
        assert shapes[f"{prefix}.fc1.weight"] == (hidden, embed_dim), prefix
        assert shapes[f"{prefix}.fc2.weight"][1] == hidden, prefix


def write_raw_safetensors(path, header, data):
    raw = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_overlapping_tensors_and_unused_bytes(tmp_path):
    """CKPT-5: tensors must tile the data buffer: overlaps and holes are reported."""
    write_tiny(tmp_path)
    path = tmp_path / "model.safetensors"
    entry = {"dtype": "F32", "shape": [2]}
    write_raw_safetensors(path, {"a": {**entry, "data_offsets": [0, 8]},
                                 "b": {**entry, "data_offsets": [4, 12]}}, bytes(12))
    assert [p for p in load_problems(tmp_path) if p.startswith("model.safetensors")] == [
        "model.safetensors: data of tensors 'a' and 'b' overlap"]
    write_raw_safetensors(path, {"a": {**entry, "data_offsets": [4, 12]}}, bytes(16))
    assert [p for p in load_problems(tmp_path) if p.startswith("model.safetensors")] == [
        "model.safetensors: 4 unused bytes before tensor 'a'",
        "model.safetensors: 4 unused bytes after the last tensor"]


def test_expected_shapes_rejects_invalid_config():
    """CKPT-2: layouts are only derived from valid configs."""
    with pytest.raises(ValueError, match="num_heads"):
        expected_shapes(default_config(**SMALL) | {"num_heads": 3})


def test_random_weights_are_deterministic_and_nontrivial():
    """CKPT-3: random_weights follows the layout; every parameter has a non-trivial value."""
    config = tiny_config("distill")
    w = random_weights(config, seed=0)
    assert {k: v.shape for k, v in w.items()} == expected_shapes(config)
    assert all(v.dtype == np.float64 for v in w.values())
    again, other = random_weights(config, seed=0), random_weights(config, seed=1)
    assert all(np.array_equal(w[k], again[k]) for k in w)
    assert all(not np.array_equal(w[k], other[k]) for k in w)
    gammas = np.concatenate([v for k, v in w.items() if k.endswith(".gamma")])
    assert 0.3 <= gammas.min() and gammas.max() < 1.0
    norm_w = np.concatenate([v for k, v in w.items() if "norm" in k and k.endswith(".weight")])
    assert abs(norm_w.mean() - 1) < 0.1 and 0.1 < norm_w.std() < 0.3
    biases = np.concatenate([v for k, v in w.items() if k.endswith(".bias")])
    assert 0.1 < biases.std() < 0.3
    fc1 = w["blocks.0.ffn.fc1.weight"]  # fan_in 16: std 1/4
    assert 0.2 < fc1.std() < 0.3
    conv = w["patch_embed.embed.proj.weight"]  # fan_in 3*4*4 = 48
    assert abs(conv.std() * math.sqrt(48) - 1) < 0.2


# ----------------------------------------------------------------- round trip (CKPT-1, 4)


@pytest.mark.parametrize(
    ("dtype", "numpy_dtype"),
    [("float32", np.float32), ("float16", np.float16), ("float64", np.float64)],
)
def test_round_trip_ieee_dtypes(tmp_path, dtype, numpy_dtype):
    """CKPT-1, CKPT-4: save then load gives the stored values exactly; files are standard."""
    config, weights = write_tiny(tmp_path, dtype=dtype)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded_config, loaded = load_checkpoint(tmp_path)
    assert loaded_config == config
    assert json.loads((tmp_path / "config.json").read_text()) == config
    assert list(loaded) == list(expected_shapes(config))
    by_library = np_load_file(str(tmp_path / "model.safetensors"))
    for key, value in weights.items():
        stored = value.astype(numpy_dtype)
        assert loaded[key].dtype == np.float64
        np.testing.assert_array_equal(loaded[key], stored.astype(np.float64))
        np.testing.assert_array_equal(by_library[key], stored)


def test_round_trip_bfloat16_matches_torch(tmp_path):
    """CKPT-4: bfloat16 is stored round-to-nearest-even (as torch) and decoded exactly."""
    config, weights = write_tiny(tmp_path, dtype="bfloat16")
    _, loaded = load_checkpoint(tmp_path)
    by_torch = torch_load_file(str(tmp_path / "model.safetensors"))
    for key, value in weights.items():
        reference = torch.from_numpy(value).float().to(torch.bfloat16)
        assert by_torch[key].dtype == torch.bfloat16
        assert torch.equal(by_torch[key], reference), key
        np.testing.assert_array_equal(loaded[key], reference.double().numpy())


def test_loads_bfloat16_written_by_safetensors_torch(tmp_path):
    """CKPT-4: a BF16 file written by the official library loads exactly."""
    config, weights = write_tiny(tmp_path)
    tensors = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in weights.items()}
    torch_save_file(tensors, str(tmp_path / "model.safetensors"))
    _, loaded = load_checkpoint(tmp_path)
    for key, tensor in tensors.items():
        np.testing.assert_array_equal(loaded[key], tensor.double().numpy())


def test_bfloat16_decode_hand_picked_bit_patterns():
    """CKPT-4: bfloat16 bits are the top half of float32 bits."""
    bits = np.array([0x3F80, 0xC000, 0x0000, 0x8000, 0x3F81, 0x0001, 0x7F7F, 0x4049, 0x7F80],
                    dtype=np.uint16)
    expected = [1.0, -2.0, 0.0, -0.0, 1 + 2**-7, 2.0**-133, (2 - 2**-7) * 2.0**127,
                3.140625, math.inf]
    decoded = bfloat16_bits_to_float32(bits)
    assert decoded.dtype == np.float32
    assert decoded.astype(np.float64).tolist() == expected
    assert np.signbit(decoded[3]) and not np.signbit(decoded[2])


def test_bfloat16_encode_rounds_to_nearest_even():
    """CKPT-4: ties go to the even mantissa; anything above a tie rounds up."""
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.0, 3.14159265])
    assert float_to_bfloat16_bits(values).tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC000,
                                                       0x4049]


def test_bfloat16_inf_and_nan_in_a_checkpoint_are_rejected(tmp_path):
    """CKPT-4, CKPT-5: decoded BF16 inf (0x7F80) and NaN (0x7FC0) are reported per key."""
    write_tiny(tmp_path, dtype="bfloat16")
    path = tmp_path / "model.safetensors"
    header, start = read_header(path)
    data = bytearray(path.read_bytes())
    for key, bits in (("process_latents.token", 0x7F80), ("output_latents.token", 0x7FC0)):
        begin = start + header[key]["data_offsets"][0]
        data[begin:begin + 2] = struct.pack("<H", bits)
    path.write_bytes(bytes(data))
    problems = load_problems(tmp_path)
    assert problems == [
        "tensor 'process_latents.token' has 1 non-finite value(s) (NaN or inf)",
        "tensor 'output_latents.token' has 1 non-finite value(s) (NaN or inf)",
    ]


# ---------------------------------------------------------------- validation (CKPT-5)


def test_missing_unexpected_and_misshaped_keys_reported_together(tmp_path):
    """CKPT-5: one error lists every missing, unexpected and mis-shaped tensor."""
    config, weights = write_tiny(tmp_path)
    del weights["blocks.1.ls1.gamma"], weights["read_head.cattn.q.bias"]
    weights["blocks.7.norm1.weight"] = np.ones(16)
    weights["patch_embed.pos_embed"] = np.zeros((1, 9, 16))
    write_safetensors(tmp_path / "model.safetensors", weights)
    problems = load_problems(tmp_path)
    assert sorted(problems) == sorted([
        "missing tensor 'blocks.1.ls1.gamma' (expected shape (16,))",
        "missing tensor 'read_head.cattn.q.bias' (expected shape (16,))",
        "unexpected tensor 'blocks.7.norm1.weight' (shape (16,))",
        "tensor 'patch_embed.pos_embed': expected shape (1, 16, 16), got (1, 9, 16)",
    ])


def test_unsupported_dtypes_are_reported(tmp_path):
    """CKPT-4, CKPT-5: integer and float8 tensors are rejected, naming key and dtype."""
    config, weights = write_tiny(tmp_path)
    tensors = {k: torch.from_numpy(v).float() for k, v in weights.items()}
    tensors["blocks.0.norm1.bias"] = tensors["blocks.0.norm1.bias"].to(torch.int32)
    tensors["blocks.0.norm2.bias"] = tensors["blocks.0.norm2.bias"].to(torch.float8_e4m3fn)
    torch_save_file(tensors, str(tmp_path / "model.safetensors"))
    problems = load_problems(tmp_path)
    assert len(problems) == 2
    assert "tensor 'blocks.0.norm1.bias' has unsupported dtype I32" in problems[0]
    assert "tensor 'blocks.0.norm2.bias' has unsupported dtype F8_E4M3" in problems[1]
    assert "allowed: F64, F32, F16, BF16" in problems[0]


def test_non_finite_values_are_reported_per_key(tmp_path):
    """CKPT-5: NaN and inf are counted per tensor."""
    config, weights = write_tiny(tmp_path)
    weights["blocks.2.ffn.fc1.weight"][0, :3] = np.nan
    weights["output_adapter.ffn.bias"][1] = -np.inf
    np_save_file({k: v.astype(np.float32) for k, v in weights.items()},
                 str(tmp_path / "model.safetensors"))
    assert sorted(load_problems(tmp_path)) == [
        "tensor 'blocks.2.ffn.fc1.weight' has 3 non-finite value(s) (NaN or inf)",
        "tensor 'output_adapter.ffn.bias' has 1 non-finite value(s) (NaN or inf)",
    ]


def corrupt(tmp_path, transform):
    write_tiny(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(transform(path.read_bytes()))
    return load_problems(tmp_path)


def test_truncated_file(tmp_path):
    """CKPT-5: a truncated data buffer is reported (offsets outside the buffer), not raised raw."""
    problems = corrupt(tmp_path, lambda data: data[: len(data) // 2])
    assert any("lie outside the" in p and "truncated or corrupt" in p for p in problems)
    assert not any(p.startswith("missing tensor") for p in problems)  # present, unreadable


def test_file_shorter_than_length_field(tmp_path):
    """CKPT-5: fewer than 8 bytes."""
    assert corrupt(tmp_path, lambda data: data[:5]) == [
        "model.safetensors is truncated: 5 bytes, fewer than the 8-byte header length field"]


def test_header_length_beyond_file(tmp_path):
    """CKPT-5: a header length larger than the file is reported without reading past it."""
    problems = corrupt(tmp_path, lambda data: struct.pack("<Q", 2**62) + data[8:])
    assert len(problems) == 1
    assert f"header length {2**62} exceeds" in problems[0]


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (b"{not json at all", "malformed JSON header"),
        (b"\xff\xfe\x00garbage", "malformed JSON header"),
        (b"[1, 2, 3]", "header must be a JSON object"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
         b' "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', "duplicate keys"),
    ],
)
def test_garbage_header(tmp_path, header, needle):
    """CKPT-5: a header that is not a JSON object of tensor entries is reported."""
    problems = corrupt(tmp_path, lambda data: struct.pack("<Q", len(header)) + header + data)
    assert len(problems) == 1 and needle in problems[0], problems


def test_empty_and_deeply_nested_headers(tmp_path):
    """CKPT-5: a file with no tensors lists every key as missing; deep JSON is just malformed."""
    config, _ = write_tiny(tmp_path)
    write_raw_safetensors(tmp_path / "model.safetensors", {}, b"")
    problems = load_problems(tmp_path)
    assert len(problems) == len(expected_shapes(config))
    assert all(p.startswith("missing tensor") for p in problems)
    deep = b"[" * 100_000 + b"]" * 100_000
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(deep)) + deep)
    (tmp_path / "config.json").write_bytes(deep)
    problems = load_problems(tmp_path)
    assert problems[0].startswith("config.json is not valid JSON")
    assert problems[1].startswith("model.safetensors has a malformed JSON header")
    with pytest.raises(TypeError, match="path_or_repo_id"):
        load_checkpoint(42)


def test_bad_header_entries_and_overlapping_offsets(tmp_path):
    """CKPT-5: malformed entries, byte-count mismatches and overlapping data are reported."""
    config, weights = write_tiny(tmp_path)
    path = tmp_path / "model.safetensors"
    header, start = read_header(path)
    data = path.read_bytes()[start:]
    header["process_latents.token"]["shape"] = [15]  # 60 bytes declared as 64
    header["output_latents.token"]["data_offsets"] = header["process_latents.token"][
        "data_offsets"]
    header["blocks.0.norm1.bias"] = "nonsense"
    header["__metadata__"] = {"format": 3}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    text = "\n".join(load_problems(tmp_path))
    assert "'process_latents.token': 64 data bytes do not match shape (15,)" in text
    assert "'blocks.0.norm1.bias': header entry must hold dtype, shape and data_offsets" in text
    assert "__metadata__ must map strings to strings" in text
    assert "overlap" in text or "unused bytes" in text


def test_missing_config_json(tmp_path):
    """CKPT-1, CKPT-5: a directory without config.json."""
    write_tiny(tmp_path)
    (tmp_path / "config.json").unlink()
    assert load_problems(tmp_path) == [f"missing config.json in {tmp_path}"]


def test_malformed_config_json(tmp_path):
    """CKPT-5: config.json that is not JSON."""
    write_tiny(tmp_path)
    (tmp_path / "config.json").write_text('{"embed_dim": 16,')
    problems = load_problems(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("config.json is not valid JSON")


def test_incomplete_and_bad_config_listed_with_weight_problems(tmp_path):
    """CKPT-2, CKPT-5: missing required keys and bad values are listed with tensor problems."""
    config, weights = write_tiny(tmp_path)
    broken = {k: v for k, v in config.items() if k not in ("embed_dim", "mat_dims")}
    broken["act_layer"] = "swiglu"
    (tmp_path / "config.json").write_text(json.dumps(broken))
    weights["blocks.0.norm1.weight"][0] = np.nan
    write_safetensors(tmp_path / "model.safetensors", weights)
    problems = load_problems(tmp_path)
    assert "config.json: missing required config key 'embed_dim' (it has no default)" in problems
    assert "config.json: missing required config key 'mat_dims' (it has no default)" in problems
    assert any(p.startswith("config.json: act_layer 'swiglu' is unsupported") for p in problems)
    assert "tensor 'blocks.0.norm1.weight' has 1 non-finite value(s) (NaN or inf)" in problems
    assert len(problems) == 4


def test_config_that_is_not_an_object(tmp_path):
    """CKPT-5: config.json must hold a JSON object."""
    write_tiny(tmp_path)
    (tmp_path / "config.json").write_text("[16, 2]")
    assert load_problems(tmp_path) == ["config.json: config must be a mapping (dict), got list"]


def test_missing_weights_mentions_pickle_files(tmp_path):
    """CKPT-1, CKPT-6: no model.safetensors; a pytorch_model.bin next to it is never loaded."""
    write_tiny(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    assert load_problems(tmp_path) == [
        f"missing model.safetensors in {tmp_path}; found ['pytorch_model.bin'], which are "
        "pickle files and are never loaded"]


def test_loading_never_unpickles(tmp_path, monkeypatch):
    """CKPT-6: load_checkpoint works with every pickle entry point disabled."""
    config, weights = write_tiny(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    loaded_config, loaded = load_checkpoint(tmp_path)
    assert loaded_config == config and set(loaded) == set(weights)


def test_path_that_is_a_file_or_absent(tmp_path):
    """CKPT-1: a checkpoint is a directory; a file or a missing local path is a clear error."""
    write_tiny(tmp_path)
    assert "is a file; pass the checkpoint directory" in load_problems(
        tmp_path / "model.safetensors")[0]
    assert "no checkpoint directory" in load_problems(tmp_path / "absent")[0]
    assert "no checkpoint directory" in load_problems("./not/a/repo/id")[0]


# ---------------------------------------------------------------------- hub ids (CKPT-1)


def test_hub_id_offline_gives_clear_message(tmp_path, monkeypatch):
    """CKPT-1: with HF_HUB_OFFLINE and an empty cache, a repo id fails fast and explains."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    problems = load_problems("pjajal/adaperceiver-v1-in1k-ft")
    assert len(problems) == 1
    message = problems[0]
    assert "'pjajal/adaperceiver-v1-in1k-ft' is not a local directory" in message
    assert "with HF_HUB_OFFLINE set" in message
    assert "pass the local directory" in message


def test_hub_id_download_failure_and_success(tmp_path, monkeypatch):
    """CKPT-1: repo ids go through hf_hub_download; any failure becomes a CheckpointError."""
    import huggingface_hub

    write_tiny(tmp_path)
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    config, weights = load_checkpoint("owner/model")
    assert calls == [("owner/model", "config.json"), ("owner/model", "model.safetensors")]
    assert config == tiny_config()

    def failing_download(repo_id, filename, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    problems = load_problems("owner/model")
    assert "config.json could not be fetched" in problems[0]
    assert "ConnectionError: network unreachable" in problems[0]


# ------------------------------------------------------------------ saving (CKPT-1, 5)


def test_save_refuses_bad_weights_and_writes_nothing(tmp_path):
    """CKPT-5: save_checkpoint validates layout and finiteness (also after the dtype cast)."""
    config = tiny_config()
    weights = random_weights(config)
    del weights["blocks.0.ls2.gamma"]
    weights["output_adapter.ffn.bias"] = np.zeros(11)
    weights["blocks.0.norm1.bias"][0] = np.inf
    weights["blocks.1.norm1.bias"][0] = 1e5  # finite in float64, inf in float16
    target = tmp_path / "out"
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(target, config, weights, dtype="float16")
    assert sorted(info.value.problems) == sorted([
        "missing tensor 'blocks.0.ls2.gamma' (expected shape (16,))",
        "tensor 'output_adapter.ffn.bias': expected shape (10,), got (11,)",
        "tensor 'blocks.0.norm1.bias' is not finite when stored as float16",
        "tensor 'blocks.1.norm1.bias' is not finite when stored as float16",
    ])
    assert not target.exists()
    with pytest.raises(ValueError, match="dtype"):
        save_checkpoint(target, config, random_weights(config), dtype="int8")


def test_distill_checkpoint_round_trip(tmp_path):
    """CKPT-1, CKPT-3: the distill kind survives the round trip (output_feat_dim kept)."""
    config, weights = write_tiny(tmp_path, config=tiny_config("distill"))
    loaded_config, loaded = load_checkpoint(str(tmp_path))
    assert loaded_config == config and "output_feat_dim" in loaded_config
    assert set(loaded) == set(weights)


# ------------------------------------------------------------------------- command line


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "reference_numpy", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_demo_command(tmp_path):
    """CKPT-1: `python -m reference_numpy demo` writes, reloads and classifies a checkpoint."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["budget", "sample", "class", "prob", "depth"]
    assert any(line.startswith("depth=1 ") and line.split()[-1] == "1" for line in lines)
    config, _ = load_checkpoint(out)
    assert config == tiny_config()
    classify = run_cli("classify", "--checkpoint", str(out), "--depth", "2", "--batch", "3")
    assert classify.returncode == 0, classify.stderr
    rows = classify.stdout.splitlines()[1:]
    assert len(rows) == 3 and all(row.split()[-1] == "2" for row in rows)


def test_classify_command_with_unreachable_hub_id(tmp_path):
    """CKPT-1: the CLI reports an unavailable hub checkpoint and exits 1."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    result = run_cli("classify", "--checkpoint", "pjajal/adaperceiver-v1", env=env)
    assert result.returncode == 1
    assert "pass the local directory" in result.stderr


def test_copying_a_checkpoint_directory_keeps_it_loadable(tmp_path):
    """CKPT-1: a checkpoint is self-contained: config.json + model.safetensors only."""
    write_tiny(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_checkpoint(tmp_path / "b")[0] == load_checkpoint(tmp_path / "a")[0]
