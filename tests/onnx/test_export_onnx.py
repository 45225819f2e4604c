"""ONNX export and ONNX Runtime runs vs the NumPy oracle (TOL-1 float32), on the golden checkpoints.

Each export costs seconds, so the few graphs are module fixtures, each covering several
features: granularities and depths through one anytime grid, an odd width with N above
max_latent_tokens on a non-square image, and the distill model through the CLI.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pytest

import reference_numpy as ref
from adaperceiver.cli.export import register
from adaperceiver.onnx.export import (
    EXPORTER_LOGGERS,
    METADATA_CONFIG,
    METADATA_GRAPH,
    export_onnx,
    graph_config,
    load_model,
    swap_weights,
)
from adaperceiver.onnx.session import OnnxGraph
from conformance.cases import make_images
from conformance.goldens import GOLDENS_DIR, load_manifest
from conformance.tolerances import RTOL, errors

onnx = pytest.importorskip("onnx")
RTOL32 = RTOL["float32"]  # TOL-1


def checkpoint(name: str) -> str:
    return str(GOLDENS_DIR / load_manifest()["checkpoints"][name]["path"])


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    err = errors(actual, expected)[1]
    assert err <= RTOL32, f"TOL-1: {what} relative error {err:.3g} > {RTOL32}"


@pytest.fixture(scope="module")
def anytime_graph(tmp_path_factory):
    """cls-flex-block (grans 2, 4, 8, 16; 4 blocks) at N = 16, every depth (ANY-1)."""
    out = tmp_path_factory.mktemp("onnx") / "anytime.onnx"
    export_onnx(checkpoint("cls-flex-block"), out, anytime=True)
    return out


@pytest.fixture(scope="module")
def odd_graph(tmp_path_factory):
    """cls-flex-block at N = 20 > max_latent_tokens 16 (ROPE-3), odd width 7, depth 3,
    8x12 images (PATCH-2); unoptimised, so its weights can be swapped."""
    result = export_onnx(checkpoint("cls-flex-block"), tmp_path_factory.mktemp("onnx") / "o.onnx",
                         num_tokens=20, mat_dim=7, depth=3, image_size=(8, 12), optimize=False)
    return result


@pytest.fixture(scope="module")
def distill_graph(tmp_path_factory):
    """The distill model exported through the command line (``export-onnx``)."""
    out = tmp_path_factory.mktemp("onnx") / "distill.onnx"
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export-onnx", "--checkpoint", checkpoint("distill-flex-block"),
                              "--out", str(out), "--num-tokens", "6", "--mat-dim", "5",
                              "--depth", "1", "--image-size", "12", "8"])
    assert args.func(args) == 0
    return out


def test_anytime_graph_every_granularity_and_depth(anytime_graph):
    """ANY-1, MASK-2, MASK-3, DEPTH-1: the anytime graph's grid entry [b, l, j] equals the
    oracle's single run with N = G[j] and depth l + 1, for every granularity and depth; its
    logits output is the full run (N = 16, depth 4)."""
    config, weights = ref.load_checkpoint(checkpoint("cls-flex-block"))
    images = make_images((3, 3, 16, 16), seed=1)
    out = OnnxGraph(anytime_graph).run(images)
    assert out["grid"].shape == (3, 4, 4, 10)
    for j, g in enumerate((2, 4, 8, 16)):
        for depth in (1, 2, 3, 4):
            expected = ref.trace(weights, config, images, num_tokens=g, depth=depth).logits
            assert_close(out["grid"][:, depth - 1, j], expected[:, 0], f"grid[N={g}, d={depth}]")
    assert_close(out["logits"], ref.trace(weights, config, images).logits, "logits")


def test_odd_width_ntk_resized_graph_and_dynamic_batch(odd_graph):
    """MAT-1 (odd width 7), ROPE-3 (N = 20 > 16), PATCH-2 (8x12 images), DEPTH-1 (3 of 4
    blocks): logits match the oracle within TOL-1; the batch is dynamic (B = 1 and B = 4
    from one graph, each row equal to its single-image run, OUT-1)."""
    config, weights = ref.load_checkpoint(checkpoint("cls-flex-block"))
    graph = OnnxGraph(odd_graph.path, threads=1)
    images = make_images((4, 3, 8, 12), seed=2)
    expected = ref.trace(weights, config, images, num_tokens=20, mat_dim=7, depth=3).logits
    batched = graph.run(images)["logits"]
    assert_close(batched, expected, "logits, B=4")
    for b in range(4):
        assert_close(graph.run(images[b:b + 1])["logits"], expected[b:b + 1], f"row {b}, B=1")
    shape = graph.session.get_inputs()[0].shape  # the batch is a symbol, the rest static
    assert isinstance(shape[0], str) and shape[1:] == [3, 8, 12]


def test_graph_passes_checker_and_records_configuration(odd_graph):
    """The saved file passes onnx.checker with full shape inference; opset >= 18; the
    checkpoint config and the baked-in configuration are in metadata_props; the batch
    dimension is symbolic and the outputs are named."""
    model = onnx.load(str(odd_graph.path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    meta = {p.key: p.value for p in model.metadata_props}
    recorded = json.loads(meta[METADATA_CONFIG])
    written = json.loads((GOLDENS_DIR / load_manifest()["checkpoints"]["cls-flex-block"]["path"]
                          / "config.json").read_text())
    assert {k: recorded[k] for k in written} == written
    graph = json.loads(meta[METADATA_GRAPH])
    assert (graph["num_tokens"], graph["mat_dim"], graph["hidden"], graph["depth"],
            graph["image_size"], graph["granularities"]) == (
                20, 7, 17, 3, [8, 12], [2, 4, 8, 16, 20])
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    assert [o.name for o in model.graph.output] == ["logits"]


def test_swapped_weights_equal_the_other_checkpoint(odd_graph):
    """CKPT-1: a graph exported from one checkpoint, with another checkpoint of the same
    config swapped in, computes that checkpoint (vs the oracle on it)."""
    config, weights = ref.load_checkpoint(checkpoint("cls-flex-block"))
    other = {k: np.random.default_rng(7).standard_normal(v.shape).astype(np.float32) * 0.1
             for k, v in weights.items()}
    graph = OnnxGraph(swap_weights(odd_graph.proto, other))
    images = make_images((2, 3, 8, 12), seed=3)
    expected = ref.trace({k: v.astype(np.float64) for k, v in other.items()}, config, images,
                         num_tokens=20, mat_dim=7, depth=3).logits
    assert_close(graph.run(images)["logits"], expected, "swapped-weights logits")
    assert errors(graph.run(images)["logits"], ref.trace(
        weights, config, images, num_tokens=20, mat_dim=7, depth=3).logits)[1] > 1e-2


def test_distill_graph_from_the_command_line(distill_graph):
    """DIST-1..3 and the CLI: ``export-onnx`` writes a distill graph whose logits and features
    match the oracle (N = 6, width 5, depth 1, 12x8 images)."""
    config, weights = ref.load_checkpoint(checkpoint("distill-flex-block"))
    images = make_images((2, 3, 12, 8), seed=4)
    out = OnnxGraph(distill_graph).run(images)
    logits, features = ref.distill(weights, config, images, num_tokens=6, mat_dim=5, depth=1)
    assert_close(out["logits"], logits, "logits")
    assert_close(out["features"], features, "features")


def test_reference_evaluator_runs_the_graph(distill_graph):
    """onnx.reference.ReferenceEvaluator (ONNX's own Python semantics, no ONNX Runtime) gives
    the oracle's outputs on the distill graph: the graph is valid ONNX, not just ORT-valid."""
    from onnx.reference import ReferenceEvaluator

    config, weights = ref.load_checkpoint(checkpoint("distill-flex-block"))
    images = make_images((1, 3, 12, 8), seed=5)
    logits, features = ReferenceEvaluator(str(distill_graph)).run(None, {"images": images})
    expected = ref.distill(weights, config, images, num_tokens=6, mat_dim=5, depth=1)
    assert_close(np.asarray(logits), expected[0], "ReferenceEvaluator logits")
    assert_close(np.asarray(features), expected[1], "ReferenceEvaluator features")


@pytest.fixture(scope="module")
def model():
    return load_model(checkpoint("cls-flex-block"))


@pytest.mark.parametrize(("kwargs", "error", "names"), [
    ({"mat_dim": [4, 8, 16]}, TypeError, "mat_dim"),
    ({"mat_dim": 17}, ValueError, "mat_dim"),
    ({"num_tokens": 0}, ValueError, "num_tokens"),
    ({"depth": 5}, ValueError, "depth"),
    ({"image_size": (10, 16)}, ValueError, "image_size"),
    ({"image_size": 16}, ValueError, "image_size"),
    ({"anytime": True, "depth": 2}, ValueError, "depth"),
])
def test_bad_static_configuration_is_a_clear_error(model, kwargs, error, names):
    """ARG-1..3, ARG-8: a configuration a static graph cannot bake in (a per-sample width
    list, out-of-range values, an image size off the patch grid, depth with anytime) raises
    before any export, naming the argument."""
    with pytest.raises(error, match=rf"\b{names}\b"):
        graph_config(model, **kwargs)


@pytest.mark.parametrize(("images", "error", "what"), [
    (make_images((2, 3, 8, 12), 0).astype(np.float64), TypeError, "float64"),
    (make_images((2, 3, 16, 16), 0), ValueError, r"\(2, 3, 16, 16\)"),
    (make_images((2, 3, 8, 12), 0).tolist(), TypeError, "list"),
    (np.full((1, 3, 8, 12), np.nan, np.float32), ValueError, "non-finite"),
])
def test_bad_images_are_a_clear_error(odd_graph, images, error, what):
    """ARG-7, ARG-8: float64 images (the graphs are float32), a size the graph was not
    exported for, a list, NaNs: an error naming ``images`` and the problem, not an ONNX
    Runtime failure."""
    graph = OnnxGraph(odd_graph.proto)
    with pytest.raises(error, match=what) as info:
        graph.run(images)
    assert "images must be" in str(info.value)


def test_export_command_prints_one_line(tmp_path, capfd, caplog):
    """The ``adaperceiver export-onnx`` command prints one line (the file, its size, the
    time and the configuration) and nothing on stderr, and the exporter's own log chatter
    (a "Skipping constant folding" warning per LayerNorm, "torchvision is not installed")
    is silenced for the export: no warning record of ``EXPORTER_LOGGERS`` is emitted."""
    from adaperceiver.cli import main

    out = tmp_path / "cls.onnx"
    status = main(["export-onnx", "--checkpoint", checkpoint("cls-flex-block"), "--out",
                   str(out), "--num-tokens", "8", "--depth", "1"])
    captured = capfd.readouterr()
    assert status == 0 and out.is_file()
    assert captured.err == ""
    assert captured.out.startswith(f"wrote {out} (") and captured.out.count("\n") == 1
    assert json.loads(captured.out.split(": ", 1)[1])["depth"] == 1
    chatter = [r.getMessage() for r in caplog.records
               if r.name.startswith(EXPORTER_LOGGERS) and r.levelno >= logging.WARNING]
    assert not chatter, chatter[:3]


def test_lim4_magnitudes_are_refused_as_torch_refuses_them(odd_graph):
    """LIM-4: images of magnitude 1e30 (finite float32) are refused by the ONNX session with
    the torch model's own words (``arguments.check_values``), naming ``images``."""
    import torch

    from adaperceiver import ClassificationAdaPerceiver

    images = make_images((1, 3, 8, 12), 0)
    images[0, 0, 0, 0] = 1e30
    with pytest.raises(ValueError, match="images must be") as onnx_error:
        OnnxGraph(odd_graph.proto).run(images)
    model = ClassificationAdaPerceiver.from_pretrained(checkpoint("cls-flex-block"))
    with pytest.raises(ValueError, match="x must be") as torch_error:
        model(torch.from_numpy(images))
    assert str(onnx_error.value).split(", got ")[1] == str(torch_error.value).split(", got ")[1]
    assert "1e+30" in str(onnx_error.value)


def test_unusable_files_are_graph_errors_not_protobuf_or_ort_types(tmp_path, odd_graph):
    """A file that is not ONNX, an ONNX model without the exporter's metadata, malformed
    metadata, and a graph ONNX Runtime cannot load: each a GraphError (a ValueError) naming
    the file, never a protobuf, onnx or onnxruntime exception type."""
    from onnx import helper

    from adaperceiver.onnx.session import GraphError

    (tmp_path / "text.onnx").write_bytes(b"\xff\xfenot a protobuf at all" * 10)
    bare = helper.make_model(helper.make_graph([], "g", [], []))
    (tmp_path / "bare.onnx").write_bytes(bare.SerializeToString())
    malformed = onnx.ModelProto()
    malformed.CopyFrom(odd_graph.proto)
    for prop in malformed.metadata_props:
        if prop.key == METADATA_GRAPH:
            prop.value = "{not json"
    (tmp_path / "malformed.onnx").write_bytes(malformed.SerializeToString())
    broken = onnx.ModelProto()
    broken.CopyFrom(odd_graph.proto)
    broken.graph.node[0].op_type = "NoSuchOperator"
    (tmp_path / "broken.onnx").write_bytes(broken.SerializeToString())
    for name, phrase in (("text", "not a readable ONNX model"),
                         ("bare", "not an AdaPerceiver export"),
                         ("malformed", "metadata is malformed"),
                         ("broken", "ONNX Runtime cannot load it")):
        with pytest.raises(GraphError, match=phrase) as info:
            OnnxGraph(tmp_path / f"{name}.onnx")
        assert f"{tmp_path / name}.onnx" in str(info.value)
        assert isinstance(info.value, ValueError)
