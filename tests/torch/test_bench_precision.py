"""``python -m adaperceiver.bench.precision``: the bundled task's grid at every precision."""

from __future__ import annotations

import json

import pytest

from adaperceiver.bench.precision import main
from adaperceiver.digits import CLUTTERED_MODEL

pytest.importorskip("onnxruntime")


@pytest.mark.slow  # exports three anytime graphs of the bundled model: 1-15 min loaded
def test_precision_table_on_the_first_canvases(capsys):
    """One row per budget of the grid (every N x depth x width of the bundled cluttered model,
    then 5 exit thresholds x 2 policies) with every path's accuracy;
    ONNX Runtime float32 equals fp32 at every budget; each summary's max |delta| is the
    largest difference of the printed accuracies."""
    assert main(["--images", "64", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| configuration"))
    assert [c.strip() for c in header.strip("|").split("|")][2:6] == [
        "fp32 acc %", "bf16 acc %", "ort fp32 acc %", "int8 acc %"]
    rows = [line.strip("|").split("|") for line in lines
            if line.startswith("| N=") or line.startswith("| exit")]
    config = json.loads((CLUTTERED_MODEL / "config.json").read_text())
    fixed = len(config["mask_token_grans"]) * config["depth"] * len(config["mat_dims"])
    assert len(rows) == fixed + 5 * 2
    accs = [[float(c) for c in row[2:6]] for row in rows]
    assert all(a[2] == a[0] for a in accs)  # ort fp32 == fp32, as printed
    for column, path in ((1, "bf16"), (2, "ort fp32"), (3, "int8")):
        summary = next(line for line in lines if line.startswith(f"{path}: max"))
        worst = max(abs(a[column] - a[0]) for a in accs)
        printed = float(summary.split("vs fp32 ")[1].split(" points")[0])
        assert abs(printed - worst) <= 0.011, (summary, worst)
    ort = next(line for line in lines if line.startswith("ort fp32: max"))
    assert "100.00 % at the full budget" in ort and "lowest 100.00 %" in ort
