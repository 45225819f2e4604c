"""``--engine`` / ``--precision`` on ``classify``, ``sweep`` and ``demo``: what ran is printed
(and, for sweep, recorded in results.json), bf16 keeps the top-1 of fp32 where fp32 is
decided, and a combination a command cannot run is one line naming what is allowed."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import reference_numpy as oracle
from adaperceiver.cli import main

HEADER = "top-"  # the classify table's header line holds "top-k (probability)"


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors and --help
        return exit_.code


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random checkpoint written by the oracle and 12 random images as .npy."""
    d = tmp_path_factory.mktemp("engines")
    config = oracle.tiny_config()
    oracle.save_checkpoint(d / "ck", config, oracle.random_weights(config, seed=5))
    shape = (12, config["in_channels"], config["img_size"], config["img_size"])
    np.save(d / "x.npy", np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    return d


def _classify(tiny, capsys, *flags: str) -> tuple[str, list[list[float]], list[str]]:
    """The header and, per image, the printed probabilities and top-1 class name."""
    assert main(["classify", "--checkpoint", str(tiny / "ck"), str(tiny / "x.npy"),
                 "--threads", "1", *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if HEADER in line)
    rows = out[out.index(header) + 1:]
    classes = [re.findall(r"([^,]+?) \(([0-9.]+)\)", line.split(maxsplit=3)[3]) for line in rows]
    probs = [[float(p) for _, p in found] for found in classes]
    top1 = [found[0][0].strip() for found in classes]
    return header, probs, top1


def test_classify_bf16_keeps_the_fp32_top1_and_says_what_ran(tiny, capsys):
    header32, probs32, top32 = _classify(tiny, capsys, "--depth", "2")
    header16, _, top16 = _classify(tiny, capsys, "--depth", "2", "--engine", "torch",
                                   "--precision", "bf16")
    assert "[engine torch, precision fp32," in header32
    assert "[engine torch, precision bf16," in header16
    decided = [i for i, p in enumerate(probs32) if p[0] - p[1] > 0.02]  # bf16 rounds ~4e-3
    assert len(decided) >= 6
    assert [top16[i] for i in decided] == [top32[i] for i in decided]


def test_classify_auto_bf16_resolves_to_torch(tiny, capsys):
    header, _, _ = _classify(tiny, capsys, "--engine", "auto", "--precision", "bf16")
    assert "[engine torch, precision bf16," in header


@pytest.mark.slow  # exports the budget to ONNX (about 7 s alone on the 2-core CPU)
def test_classify_onnxruntime_prints_the_probabilities_of_torch(tiny, capsys):
    header, probs, top1 = _classify(tiny, capsys, "--depth", "2", "--engine", "onnxruntime")
    _, probs32, top32 = _classify(tiny, capsys, "--depth", "2")
    assert "[engine onnxruntime, precision fp32," in header
    assert np.abs(np.array(probs) - np.array(probs32)).max() <= 0.0015  # 3 decimals printed
    assert top1 == top32


@pytest.mark.parametrize("command, flags, allowed", [
    (["classify", "x.npy"], ["--engine", "torch", "--precision", "int8"],
     "--precision int8 is not available with --engine torch (allowed: torch: fp32, bf16"),
    (["sweep"], ["--engine", "compiled"],
     "sweep: --engine compiled --precision fp32 cannot evaluate the budget grid"),
    (["sweep"], ["--precision", "int8"],
     "sweep: --engine torch --precision int8 cannot evaluate the budget grid"),
    (["demo"], ["--engine", "compiled"],
     "demo: --engine compiled --precision fp32 cannot evaluate the budget grid"),
])
def test_unsupported_combination_is_one_line(tiny, tmp_path, capsys, command, flags, allowed):
    argv = [*command, *flags]
    if command[0] == "classify":
        argv = ["classify", str(tiny / "x.npy"), "--checkpoint", str(tiny / "ck"), *flags]
    elif command[0] == "sweep":
        argv += ["--checkpoint", str(tiny / "ck"), "--out", str(tmp_path / "o")]
    else:
        argv += ["--out", str(tmp_path / "demo.png")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert allowed in err and "fp32" in err.split("allowed:")[1]
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "demo.png").exists()


def test_sweep_records_engine_and_precision(tiny, tmp_path, capsys):
    """A folder of one random image per class; --engine auto --precision bf16 runs the torch
    grid under autocast and says so in results.json and the legend."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for c in range(oracle.tiny_config()["num_classes"]):
        (tmp_path / "data" / f"c{c:02d}").mkdir(parents=True)
        for i in range(1):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
                tmp_path / "data" / f"c{c:02d}" / f"{i}.png")
    assert main(["sweep", "--checkpoint", str(tiny / "ck"), "--data", str(tmp_path / "data"),
                 "--labels", "sorted", "--out", str(tmp_path / "out"), "--batch-size", "3",
                 "--workers", "0", "--threads", "1", "--device", "cpu", "--engine", "auto",
                 "--precision", "bf16"]) == 0
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert meta["engine"] == "torch"
    assert meta["precision"] == "bfloat16 autocast (weights float32)"
    out = capsys.readouterr().out
    assert "computed with engine torch, precision bf16" in out
    assert "(engine torch, precision bf16)" in out  # the first line


@pytest.mark.parametrize("command", ["classify", "sweep", "demo"])
def test_help_lists_both_flags(command, capsys):
    assert _status([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--engine {auto,torch,compiled,onnxruntime}" in text
    assert "--precision {fp32,bf16,int8}" in text
