"""The anytime grid on every engine and precision (``engine.anytime_model``,
``onnx.anytime.OnnxAnytime``) and ``sweep`` / ``demo`` with ``--engine onnxruntime``.

ONNX Runtime float32 is checked against the oracle's anytime grid (TOL-1 float32) and its
sweep counts against the torch model's (equal: the same top-1 and exit decisions); int8
within ``RTOL["int8"]`` of the oracle, recorded as int8 in results.json. Each export of the
tiny model takes 5-60 s depending on the machine's load, so those tests are marked slow and
share one module fixture (int8 graphs are quantized from its float32 graphs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_helpers import checkpoint, images, rel_err

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli import main
from adaperceiver.cli.sweeping import evaluate_arrays
from adaperceiver.engine import anytime_model
from conformance.tolerances import RTOL

pytest.importorskip("onnxruntime")
CONFIG = rn.tiny_config()
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint path, model, the oracle's float64 weights)."""
    with checkpoint(CONFIG, seed=4) as (path, weights):
        yield path, ClassificationAdaPerceiver.from_pretrained(path).eval(), weights


@pytest.fixture(scope="module")
def data():
    x = images(24, CONFIG, seed=2).astype(np.float32)  # ONNX graphs take float32
    y = np.random.default_rng(3).integers(0, CONFIG["num_classes"], len(x))
    return x, y


@pytest.fixture(scope="module")
def ort(tiny):
    """Float32 OnnxAnytime with the graphs of every trained width, and its int8 sibling."""
    _, model, _ = tiny
    fp32 = anytime_model(model, engine="onnxruntime", precision="fp32")
    for m in CONFIG["mat_dims"]:
        fp32.graph(None, m, None, None)
    return fp32, fp32.quantized()


@SLOW
def test_onnx_grid_matches_the_oracle(tiny, ort, data):
    """ANY-1: every (depth, granularity) entry of the ORT grid equals the oracle's, at two
    widths; int8 within RTOL["int8"]. Also the AnytimeOutput's depths and granularities."""
    _, _, weights = tiny
    x = data[0][:6]
    for m in (8, 16):
        expected = rn.anytime(weights, CONFIG, x.astype(np.float64), mat_dim=m)
        got = ort[0].anytime(torch.from_numpy(x), mat_dim=m)
        assert got.logits.shape == expected.logits.shape
        assert rel_err(got.logits, expected.logits) <= RTOL["float32"]
        assert got.granularities == expected.granularities and got.depths == expected.depths
        assert rel_err(ort[1].anytime(x, mat_dim=m).logits, expected.logits) <= RTOL["int8"]


@SLOW
def test_onnx_sweep_counts_equal_the_torch_counts(tiny, ort, data):
    """The whole grid and the exit rows from ONNX Runtime float32 count the same top-1,
    top-5 hits and exit depths as the torch model, with the same NLL up to float32."""
    _, model, _ = tiny
    x, y = data
    with torch.inference_mode():
        ref = evaluate_arrays(model, x, y, batch_size=8).counts
    got = evaluate_arrays(model, x, y, batch_size=8, engine="onnxruntime",
                          computes=ort[0]).counts
    for name in ("images", "grid_top1", "grid_top5", "exit_top1", "exit_top5", "exit_depths"):
        assert torch.equal(getattr(got, name), getattr(ref, name)), name
    assert int(ref.grid_top1.sum()) > 0  # the comparison is not between empty counts
    for name in ("grid_nll", "exit_nll"):
        assert torch.allclose(getattr(got, name), getattr(ref, name), rtol=1e-4), name


@SLOW
def test_quantized_graphs_are_int8(ort, data):
    """quantized() derives a graph for every exported width (no export) whose logits are
    not the float32 ones (the matmuls were quantized); it needs a float32 object."""
    fp32, int8 = ort
    assert set(int8.graphs) == set(fp32.graphs) and len(int8.graphs) == 3
    assert int8.quantize == "int8" and int8.protos == {}
    x = data[0][:6]
    assert rel_err(int8.anytime(x, mat_dim=16).logits,
                   fp32.anytime(x, mat_dim=16).logits.double().numpy()) > 1e-5
    with pytest.raises(ValueError, match="quantized\\(\\) needs a float32 OnnxAnytime"):
        int8.quantized()


@SLOW
def test_sweep_onnxruntime_int8_records_engine_and_precision(tiny, tmp_path, capsys):
    """One width (one export): results.json says engine onnxruntime and int8, the legend
    says what ran, and every fixed budget of that width has a row."""
    path, _, _ = tiny
    from PIL import Image

    rng = np.random.default_rng(2)
    for c in range(CONFIG["num_classes"]):
        (tmp_path / "data" / f"c{c:02d}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
            tmp_path / "data" / f"c{c:02d}" / "0.png")
    assert main(["sweep", "--checkpoint", str(path), "--data", str(tmp_path / "data"),
                 "--labels", "sorted", "--out", str(tmp_path / "out"), "--batch-size", "4",
                 "--workers", "0", "--threads", "1", "--widths", "16", "--engine", "auto",
                 "--precision", "int8"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["meta"]["engine"] == "onnxruntime"
    assert results["meta"]["precision"].startswith("int8 weight matmuls")
    fixed = [r for r in results["rows"] if r["tau"] is None]
    assert len(fixed) == CONFIG["depth"] * len(CONFIG["mask_token_grans"])
    assert {r["width"] for r in fixed} == {16}
    out = capsys.readouterr().out
    assert "exported 1 anytime graph(s) (one per width, int8)" in out
    assert "computed with engine onnxruntime, precision int8" in out


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--engine", "onnxruntime", "--precision", "bf16"],
     "sweep: --engine onnxruntime --precision bf16 cannot evaluate the budget grid"),
    (["--engine", "compiled"], "sweep: --engine compiled --precision fp32 cannot evaluate"),
    (["--engine", "onnxruntime", "--time", "1"], "--time: with --engine onnxruntime"),
    (["--engine", "onnxruntime", "--device", "cuda"],
     "--device cuda: --engine onnxruntime computes on the CPU"),
])
def test_sweep_refusals_are_one_line(tiny, tmp_path, capsys, flags, message):
    path, _, _ = tiny
    err = _one_line_error(capsys, ["sweep", "--checkpoint", str(path), "--out",
                                   str(tmp_path / "o"), *flags])
    assert message in err
    assert not (tmp_path / "o").exists()


def test_demo_refuses_bf16_on_onnxruntime_in_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, ["demo", "--out", str(tmp_path / "d.png"), "--engine",
                                   "onnxruntime", "--precision", "bf16"])
    assert "demo: --engine onnxruntime --precision bf16 cannot evaluate" in err
    assert "--engine onnxruntime with --precision fp32 or int8" in err
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("engine, precision", [("compiled", "fp32"), ("torch", "int8"),
                                               ("onnxruntime", "bf16")])
def test_anytime_model_refuses_what_cannot_compute_the_grid(tiny, engine, precision):
    _, model, _ = tiny
    with pytest.raises(ValueError, match=f"engine '{engine}' with precision '{precision}' "
                                         "cannot compute the anytime grid"):
        anytime_model(model, engine=engine, precision=precision)


def test_anytime_model_is_the_model_for_torch_and_auto(tiny):
    _, model, _ = tiny
    assert anytime_model(model, engine="torch", precision="bf16") is model
    assert anytime_model(model, engine="auto", precision="fp32") is model
    assert type(anytime_model(model, engine="auto", precision="int8")).__name__ == "OnnxAnytime"


def test_bundled_set_names_are_the_loaders():
    """sweep --help lists BUNDLED_SETS without importing the dataset module."""
    from adaperceiver.cli.common import BUNDLED_SETS
    from adaperceiver.cli.dataset import BUNDLED

    assert tuple(BUNDLED) == BUNDLED_SETS
