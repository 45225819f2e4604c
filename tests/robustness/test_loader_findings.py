"""Regression tests for the loader findings F1, F2, F3, F6, F7, N1, N5, N6 (CKPT-5, CKPT-7,
CKPT-8, CKPT-9, LIM-1). Both loaders, each case with a time bound: the cases that used to
hang or exhaust memory run in a subprocess with a timeout and report their peak RSS;
the rest run in-process under an alarm."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import torch
from robust_helpers import (
    edit_config,
    make_checkpoint,
    read_header,
    run_bounded,
    time_bound,
    write_header,
)

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.hub import CheckpointError as TorchCheckpointError

ORACLE_LOAD = "import reference_numpy as rn\nrn.load_checkpoint({path!r})\nreturn 'loaded'"
TORCH_LOAD = ("from adaperceiver import ClassificationAdaPerceiver as M\n"
              "M.from_pretrained({path!r})\nreturn 'loaded'")




def oracle_problems(path) -> str:
    with time_bound(30), pytest.raises(rn.CheckpointError) as err:
        rn.load_checkpoint(path)
    return str(err.value)


def torch_problems(path) -> str:
    with time_bound(30), pytest.raises(TorchCheckpointError) as err:
        ClassificationAdaPerceiver.from_pretrained(path)
    return str(err.value)


@pytest.fixture
def ck(tmp_path):
    return make_checkpoint(tmp_path / "ck")


# ------------------------------------------------------------------ F1: huge depth


@pytest.mark.parametrize("loader", [ORACLE_LOAD, TORCH_LOAD], ids=["oracle", "torch"])
def test_f1_huge_depth_is_rejected_quickly_with_a_short_message(ck, loader):
    """F1, CKPT-7: depth 10**9 in config.json used to hang both loaders with growing memory
    (4.1 GB oracle, 1.2 GB torch at 90 s). Now: a CheckpointError within the time bound,
    a short message, and bounded memory."""
    edit_config(ck, depth=10**9)
    result = run_bounded(loader.format(path=str(ck)), timeout=90)
    assert result["error"] == "CheckpointError"
    assert "does not belong to these weights" in result["message"]
    assert result["length"] < 2000
    assert result["peak_kb"] < 1_500_000


def test_f1_moderate_depth_lists_at_most_fifty_problems(ck):
    """F1, CKPT-7: depth 10**5 gave a 127 MB oracle message; depth 3 + 40 (within the
    enumeration slack) lists 50 problems then a count."""
    edit_config(ck, depth=10**5)
    assert len(oracle_problems(ck)) < 2000
    edit_config(ck, depth=43)
    message = oracle_problems(ck)
    lines = message.splitlines()[1:]
    assert len(lines) == 51 and lines[-1].startswith("  - ... and ")
    assert "missing tensor 'blocks.3.norm1.weight'" in message


def test_f1_a_high_block_index_in_the_header_does_not_license_a_huge_depth(ck):
    """F1, CKPT-7: one zero-size key "blocks.999999999.x" must not make depth 10**9 look
    plausible; both loaders compare tensor counts, not the largest block index."""
    header, data = read_header(ck)
    header["blocks.999999999.norm1.weight"] = {"dtype": "F32", "shape": [0],
                                               "data_offsets": [len(data), len(data)]}
    write_header(ck, header, data)
    edit_config(ck, depth=10**9)
    for message in (oracle_problems(ck), torch_problems(ck)):
        assert "does not belong to these weights" in message and len(message) < 2000


def test_problem_lines_are_cut(ck):
    """CKPT-7: a 1 MB key is quoted in a few hundred characters, not whole."""
    header, data = read_header(ck)
    key = "k" * 1_000_000
    header[key] = {"dtype": "F32", "shape": [0], "data_offsets": [len(data), len(data)]}
    write_header(ck, header, data)
    assert len(oracle_problems(ck)) < 5000 and len(torch_problems(ck)) < 5000
    make_checkpoint(ck)
    edit_config(ck, act_layer="x" * 500_000)
    assert len(oracle_problems(ck)) < 5000 and len(torch_problems(ck)) < 5000


def test_f1_torch_depth_just_above_the_header_lists_missing_blocks(ck):
    """CKPT-5, CKPT-7: a depth a few blocks too large still gets the detailed listing."""
    edit_config(ck, depth=4)
    assert "missing tensor 'blocks.3.norm1.weight'" in torch_problems(ck)


# ------------------------------------------------------------- F2: many header keys


@pytest.mark.parametrize("loader", [ORACLE_LOAD, TORCH_LOAD], ids=["oracle", "torch"])
def test_f2_two_hundred_thousand_header_keys_are_linear(ck, loader):
    """F2, CKPT-7: 200,000 zero-size extra keys (a 4.6 MB header) took ~16 min in the oracle
    (quadratic duplicate check). Now a clean error well within the bound."""
    header, data = read_header(ck)
    header.update({f"x{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                   for i in range(200_000)})
    write_header(ck, header, data)
    result = run_bounded(loader.format(path=str(ck)), timeout=120)
    assert result["error"] == "CheckpointError"
    assert "unexpected tensor 'x0'" in result["message"]
    assert result["length"] < 20_000


# ------------------------------------------------------------- F3: float32 overflow


def test_f3_float64_value_beyond_float32_is_an_error_in_torch(tmp_path):
    """F3, CKPT-9: a finite F64 value of 4e38 used to load as inf (NaN logits). Torch now
    names the tensor; the float64 oracle loads it exactly (CKPT-4)."""
    ck = make_checkpoint(tmp_path / "ck", dtype="float64")
    header, data = read_header(ck)
    data = bytearray(data)
    begin = header["blocks.0.ffn.fc1.weight"]["data_offsets"][0]
    data[begin:begin + 8] = np.float64(4e38).tobytes()
    write_header(ck, header, bytes(data))
    message = torch_problems(ck)
    assert "'blocks.0.ffn.fc1.weight'" in message and "overflows float32" in message
    _, weights = rn.load_checkpoint(ck)
    assert weights["blocks.0.ffn.fc1.weight"].flat[0] == 4e38  # decoded exactly


# -------------------------------------------------- F6: low-level exceptions escaping


def _extra_entry(ck, entry):
    header, data = read_header(ck)
    header["extra"] = {**entry, "data_offsets": [len(data), len(data)]}
    write_header(ck, header, data)


@pytest.mark.parametrize("shape", [[0] * 65, [0, 2**64], [0, 2**63]])
def test_f6_extreme_header_shapes_are_checkpoint_errors(ck, shape):
    """F6, CKPT-5, CKPT-7: >64 dims or dims beyond int64 used to escape as a reshape
    ValueError from the oracle; an unexpected tensor is no longer decoded at all."""
    _extra_entry(ck, {"dtype": "F32", "shape": shape})
    assert "unexpected tensor 'extra'" in oracle_problems(ck)
    torch_problems(ck)  # a CheckpointError (the safetensors library rejects the entry)


@pytest.mark.parametrize("changes", [
    {"embed_dim": 10**309}, {"embed_dim": 10**20}, {"embed_dim": 2**62},
    {"ffn_ratio": 1e300}, {"img_size": 4 * 10**12}, {"max_latent_tokens": 10**12},
], ids=["D-10e309", "D-10e20", "D-2e62", "ratio-1e300", "img-4e12", "L-10e12"])
def test_f6_huge_config_sizes_are_checkpoint_errors(ck, changes):
    """F6, F8, LIM-1, LIM-2: OverflowError, a TypeError with a C++ trace and a RuntimeError
    used to escape; now both loaders name the field in a CheckpointError."""
    edit_config(ck, **changes)
    field = next(iter(changes))
    for message in (oracle_problems(ck), torch_problems(ck)):
        assert field in message
        assert "Traceback" not in message and len(message) < 2000


def test_f6_deeply_nested_config_and_self_key(ck):
    """F6, CKPT-5: a config.json nested 100k deep (RecursionError) and a key "self"
    (TypeError from the constructor) are CheckpointErrors in torch as in the oracle."""
    (ck / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "not valid JSON" in torch_problems(ck) and "not valid JSON" in oracle_problems(ck)
    make_checkpoint(ck)
    edit_config(ck, self=1)
    assert "unknown config key 'self'" in torch_problems(ck)
    assert "unknown config key 'self'" in oracle_problems(ck)


def test_f6_signalling_nan_is_reported_without_a_warning(ck):
    """F6, CKPT-5: an F32 signalling NaN raised a RuntimeWarning in the oracle's cast
    (an error under the project's warnings-as-errors); now only the CheckpointError."""
    header, data = read_header(ck)
    data = bytearray(data)
    begin = header["process_latents.token"]["data_offsets"][0]
    data[begin:begin + 4] = struct.pack("<I", 0x7F800001)
    write_header(ck, header, bytes(data))
    assert "'process_latents.token' has 1 non-finite value(s)" in oracle_problems(ck)
    assert "'process_latents.token' has 1 non-finite value(s)" in torch_problems(ck)


# ----------------------------------------------------- F7: never the whole file


def test_f7_oracle_reads_only_header_and_expected_tensors(ck):
    """F7, CKPT-7: 3 GiB of trailing zeros (a sparse file) cost the oracle 3 GB of memory;
    a 2.9 GiB header length ended in MemoryError. Both are now rejected from the header
    alone with a peak RSS far below the file size."""
    path = ck / "model.safetensors"
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + 3 * 2**30)
    body = ORACLE_LOAD.format(path=str(ck))
    result = run_bounded(body, timeout=60)
    assert result["error"] == "CheckpointError" and "unused bytes" in result["message"]
    assert result["peak_kb"] < 300_000
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", int(2.9 * 2**30)))
    result = run_bounded(body, timeout=60)
    assert result["error"] == "CheckpointError"
    assert "exceeds the safetensors limit of 100000000 bytes" in result["message"]
    assert result["peak_kb"] < 300_000


def test_f7_unexpected_large_tensor_is_not_decoded(ck):
    """F7, CKPT-7: an unexpected 64 MiB tensor is reported without being decoded."""
    header, data = read_header(ck)
    header["junk"] = {"dtype": "F16", "shape": [2**25],
                      "data_offsets": [len(data), len(data) + 2**26]}
    write_header(ck, header, data + bytes(2**26))
    result = run_bounded(ORACLE_LOAD.format(path=str(ck)), timeout=60)
    assert result["error"] == "CheckpointError" and "unexpected tensor 'junk'" in result["message"]
    assert result["peak_kb"] < 200_000  # the file is 64 MiB; decoding would take 256 MiB


# ------------------------------------------------------- N1, N5: duplicate keys


def test_n1_duplicate_header_key_is_rejected_by_both(ck):
    """N1, CKPT-8: the same header key twice with identical entries; torch used to keep the
    last one silently."""
    header, data = read_header(ck)
    text = f'{{"process_latents.token": {json_entry(header["process_latents.token"])}, '
    write_header(ck, text + json_body(header), data)
    assert "duplicate" in oracle_problems(ck).lower()
    assert "more than once" in torch_problems(ck)


def test_n5_duplicate_config_key_is_rejected_by_both(ck):
    """N5, CKPT-8: {"depth": 3, ..., "depth": 3} in config.json."""
    text = (ck / "config.json").read_text()
    (ck / "config.json").write_text('{"depth": 3, ' + text.lstrip()[1:])
    assert "duplicate" in oracle_problems(ck).lower()
    assert "more than once" in torch_problems(ck)


def json_entry(entry) -> str:
    import json
    return json.dumps(entry)


def json_body(header) -> str:
    import json
    return json.dumps(header)[1:]


# ------------------------------------------------------ N6: non-regular files


@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "directory"])
def test_n6_config_that_is_not_a_regular_file(ck, kind):
    """N6, CKPT-8: a FIFO, /dev/zero, a symlink loop or a directory as config.json is
    reported as such by both loaders (it used to be "missing"); a FIFO is never waited on
    (the alarm of ``time_bound`` would interrupt a blocking open)."""
    path = ck / "config.json"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path)
    else:
        path.mkdir()
    for message in (oracle_problems(ck), torch_problems(ck)):
        assert "not a regular file" in message or "cannot be opened" in message
        assert "missing" not in message


@pytest.mark.parametrize("bad", [None, 123, b"x"])
def test_n6_from_pretrained_argument_type(bad):
    """N6, CKPT-8: a TypeError naming the argument, not pathlib's."""
    with pytest.raises(TypeError, match="pretrained_model_name_or_path must be"):
        ClassificationAdaPerceiver.from_pretrained(bad)


def test_n6_missing_local_directory(tmp_path):
    """N6, CKPT-8: a missing local directory is a CheckpointError, not a hub id error."""
    with pytest.raises(TorchCheckpointError, match="no checkpoint directory"):
        ClassificationAdaPerceiver.from_pretrained(tmp_path / "nope")
    with pytest.raises(TorchCheckpointError, match="no checkpoint directory"):
        ClassificationAdaPerceiver.from_pretrained(str(tmp_path / "nope"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_n6_map_location_cuda_without_cuda(ck):
    """N6, CKPT-8: a ValueError naming map_location instead of torch's AssertionError."""
    with pytest.raises(ValueError, match="map_location 'cuda' needs CUDA"):
        ClassificationAdaPerceiver.from_pretrained(ck, map_location="cuda")
    with pytest.raises(ValueError, match="map_location must name a torch device"):
        ClassificationAdaPerceiver.from_pretrained(ck, map_location="gpu0")


def test_n8_allowed_configs_still_load(ck):
    """N8: unsorted mat_dims and token grans above max_latent_tokens stay allowed."""
    edit_config(ck, mat_dims=[16, 4, 8], mask_token_grans=[2, 4, 8, 16, 64])
    rn.load_checkpoint(ck)
    ClassificationAdaPerceiver.from_pretrained(ck)
