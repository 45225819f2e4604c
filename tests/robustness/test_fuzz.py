"""Fuzz targets (Hypothesis grammars) over safetensors headers, config.json and forward
arguments. They assert only what the spec documents: loaders raise nothing but
``CheckpointError`` (CKPT-5, CKPT-7, CKPT-8), forward calls nothing but ``TypeError`` or
``ValueError`` (ARG-8, LIM-2..4), and the two implementations agree on the error type.
Every example runs under a time bound. Brief in the ``ci`` Hypothesis profile (the
default), long with ``HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from robust_helpers import make_checkpoint, read_header, time_bound, write_header

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.hub import CheckpointError as TorchCheckpointError

EXAMPLE_SECONDS = 20  # the time bound of one example (both loaders or both forwards)




@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """(config text, header, data) of a valid tiny checkpoint to mutate."""
    directory = make_checkpoint(tmp_path_factory.mktemp("fuzz") / "ck")
    header, data = read_header(directory)
    return (directory / "config.json").read_text(), header, data


def load_both(directory: Path) -> tuple[str, str]:
    """Outcome of each loader: "loaded" or "CheckpointError"; anything else escapes."""
    outcomes = []
    with time_bound(EXAMPLE_SECONDS):
        for load, error in ((rn.load_checkpoint, rn.CheckpointError),
                            (ClassificationAdaPerceiver.from_pretrained, TorchCheckpointError)):
            try:
                load(directory)
                outcomes.append("loaded")
            except error:
                outcomes.append("CheckpointError")
    return outcomes[0], outcomes[1]


# ------------------------------------------------------------------ grammars

huge_ints = st.sampled_from([0, 1, 2, -1, 2**31, 2**63, 2**64, 10**20, 10**309])
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), huge_ints,
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
dtypes = st.sampled_from(["F32", "F16", "BF16", "F64", "I32", "BOOL", "F8_E4M3", "", 7])
shapes = st.one_of(st.lists(st.integers(0, 40), max_size=5), st.lists(huge_ints, max_size=70),
                   json_values)


@st.composite
def header_mutations(draw, keys):
    """A list of (key, field, value) edits of existing entries, plus extra entries."""
    edits = draw(st.lists(st.tuples(st.sampled_from(keys),
                                    st.sampled_from(["dtype", "shape", "data_offsets", "entry"]),
                                    st.one_of(dtypes, shapes, json_values)), max_size=4))
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=12),
                                 st.fixed_dictionaries({"dtype": dtypes, "shape": shapes,
                                                        "data_offsets": json_values}),
                                 max_size=3))
    return edits, extra


@given(data=st.data())
def test_fuzz_safetensors_header(template, data):
    """CKPT-5, CKPT-7: mutated header entries, extra entries, a wrong length field and
    truncation give a CheckpointError (or a load) from both loaders, never another
    exception or a hang; both loaders agree whether the file loads."""
    config_text, header, buffer = template
    edits, extra = data.draw(header_mutations(sorted(header)))
    mutated = json.loads(json.dumps(header))
    for key, field, value in edits:
        if field == "entry":
            mutated[key] = value
        elif isinstance(mutated[key], dict):
            mutated[key][field] = value
    mutated.update(extra)
    raw = json.dumps(mutated).encode()
    length = data.draw(st.sampled_from([len(raw), 0, len(raw) + 1, 2**63, 200_000_000]))
    cut = data.draw(st.sampled_from([None, 3, len(raw) // 2, -1]))
    blob = length.to_bytes(8, "little") + raw + buffer
    blob = blob if cut is None else blob[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "config.json").write_text(config_text)
        (directory / "model.safetensors").write_bytes(blob)
        oracle, ours = load_both(directory)
    assert oracle == ours


config_keys = st.sampled_from(list(rn.tiny_config()) + ["output_feat_dim", "self", "x"])


@given(changes=st.dictionaries(config_keys, json_values, max_size=4),
       removed=st.lists(config_keys, max_size=2))
def test_fuzz_config_json(template, changes, removed):
    """CKPT-2, CKPT-5, LIM-1: config values of any JSON type and size give a
    CheckpointError (or a load) from both loaders and never another exception."""
    config_text, header, buffer = template
    config = json.loads(config_text)
    config.update(changes)
    for key in removed:
        config.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "config.json").write_text(json.dumps(config))
        write_header(directory, header, buffer)
        load_both(directory)


@given(raw=st.binary(max_size=300))
def test_fuzz_config_bytes(template, raw):
    """CKPT-5, CKPT-8: arbitrary bytes as config.json are CheckpointErrors."""
    _, header, buffer = template
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "config.json").write_bytes(raw)
        write_header(directory, header, buffer)
        assert load_both(directory) == ("CheckpointError", "CheckpointError")


# ----------------------------------------------------------- forward arguments

CONFIG = rn.tiny_config()
small_or_huge = st.one_of(st.integers(-3, 20), st.sampled_from([65537, 10**30]),
                          st.sampled_from([np.int64(5), np.uint64(2**63)]))
argument_values = st.one_of(st.none(), small_or_huge, st.booleans(),
                            st.floats(-2, 2) | st.sampled_from([float("nan"), float("inf")]),
                            st.text(max_size=3), st.lists(small_or_huge, max_size=4),
                            st.lists(small_or_huge, max_size=4).map(tuple),
                            st.lists(st.integers(1, 20), max_size=3).map(np.array))
arguments = st.fixed_dictionaries({}, optional={
    name: argument_values
    for name in ("num_tokens", "mat_dim", "depth", "depth_tau", "token_grans", "exit_policy")})


@pytest.fixture(scope="module")
def pair(template, tmp_path_factory):
    directory = make_checkpoint(tmp_path_factory.mktemp("fuzz-forward") / "ck")
    _, weights = rn.load_checkpoint(directory)
    return ClassificationAdaPerceiver.from_pretrained(directory), weights


@given(kwargs=arguments, scale=st.sampled_from([1.0, 1e8, 1.01e8, 1e30]),
       batch=st.integers(1, 2))
def test_fuzz_forward_arguments(pair, kwargs, scale, batch):
    """ARG-1..8, LIM-2, LIM-4: any mix of argument values gives a result or a TypeError /
    ValueError, the same type from both implementations (word for word for the
    arguments other than the images)."""
    model, weights = pair
    x = scale * np.random.default_rng(batch).standard_normal((batch, 3, 16, 16))
    outcomes = []
    with time_bound(EXAMPLE_SECONDS):
        for call in (lambda: model(torch.from_numpy(x), **kwargs),
                     lambda: rn.classify(weights, CONFIG, x, **kwargs)):
            try:
                call()
                outcomes.append(("ran", ""))
            except (TypeError, ValueError) as err:
                outcomes.append((type(err).__name__, str(err)))
    (ours, our_text), (oracle, oracle_text) = outcomes
    assert ours == oracle, (our_text, oracle_text)
    if ours != "ran" and not our_text.startswith("x must be"):
        assert our_text == oracle_text
