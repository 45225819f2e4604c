"""The ``adaperceiver`` command: demo, sweep, classify and train end to end (subprocesses for
the whole-program runs), and every error path as one line on stderr with no traceback."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reference_numpy as oracle
from adaperceiver import ClassificationAdaPerceiver, cluttered
from adaperceiver.cli import main
from adaperceiver.digits import BUNDLED_MODEL, DIGITS_FILE
from adaperceiver.train import RECIPE

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m adaperceiver ARGV`` in a subprocess, offline, importing this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "adaperceiver", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _table_rows(stdout: str) -> list[list[str]]:
    """Data rows of the results table: configuration, then acc, 95% interval, top-5, NLL,
    GFLOPs, rel, ms/img (when timed) and optional flags ('*', '!')."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith(("N=", "exit tau=")):
            rows.append(line.split())
    return rows


def _digit_png(path: Path, counts: np.ndarray, *, mode: str = "L", scale: int = 12) -> None:
    """A test digit as a black-on-white image, upscaled (what a user's drawing looks like)."""
    ink = np.kron(counts.astype(np.float64) / 16, np.ones((scale, scale)))
    grey = np.pad(255 - 255 * ink, scale, constant_values=255).astype(np.uint8)
    image = Image.fromarray(grey, "L")
    if mode == "RGBA":  # ink in the colour channels, a half-transparent background (PRE-6
        rgba = np.repeat(grey[:, :, None], 4, axis=2)  # drops alpha, as the published decode)
        rgba[..., 3] = np.where(grey > 128, 128, 255)
        image = Image.fromarray(rgba, "RGBA")
    elif mode != "L":
        image = image.convert(mode)
    image.save(path)


@pytest.fixture(scope="module")
def test_digits():
    with np.load(DIGITS_FILE, allow_pickle=False) as data:
        return data["images"][data["test"]], data["labels"][data["test"]]


def test_demo_prints_the_grid_and_writes_the_plot(tmp_path):
    """demo: the pixel baselines with intervals, every (N, depth, width) configuration
    (ANY-1) and both exit policies at 5 thresholds (EXIT-2, EXIT-3), sorted by compute, a
    Pareto front, the trained model far above the baselines, the findings, a PNG."""
    result = _run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    baselines = [float(ln.split("%")[0].split()[-1]) for ln in out.splitlines()
                 if "on pixels" in ln]
    assert len(baselines) == 3 and all(5 < b < 40 for b in baselines)
    rows = _table_rows(out)
    c = json.loads((BUNDLED_MODEL / "config.json").read_text())
    assert len(rows) == len(c["mask_token_grans"]) * c["depth"] * len(c["mat_dims"]) + 5 * 2
    gflops = [float(r[5 + 4] if r[0] == "exit" else r[3 + 4]) for r in rows]  # after the name
    assert gflops == sorted(gflops)
    assert any(r[-1] == "*" for r in rows)
    full = next(r for r in rows if r[:3] == ["N=16", "depth=6", "width=64"])
    assert float(full[3]) >= max(baselines) + 50
    assert "keeping 95 % of full accuracy" in out and "each axis with the other two" in out
    png = tmp_path / "adaperceiver-demo.png"
    assert f"wrote the plot to {png.name}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stderr == ""


def test_sweep_writes_results_and_answers_a_budget(tmp_path):
    """sweep --budget: the chosen configuration is the most accurate one within the budget in
    results.json, and the early-exit answer meets the budget."""
    result = _run("sweep", "--out", "out", "--budget", "0.003", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == len(rows) + 1
    assert (tmp_path / "out" / "accuracy_vs_gflops.png").stat().st_size > 10_000
    fitting = [r for r in rows if r["tau"] is None and r["gflops"] <= 0.003]
    best = max(r["accuracy"] for r in fitting)
    line = next(ln for ln in result.stdout.splitlines() if "most accurate" in ln)
    chosen = next(r for r in fitting if r["name"] in line)
    assert chosen["accuracy"] == best
    for policy in ("batch_mean", "per_sample"):
        exit_line = next(ln for ln in result.stdout.splitlines() if f"early exit {policy}" in ln)
        assert "depth_tau" in exit_line
        assert float(exit_line.split("mean ")[1].split()[0]) <= 0.003


def test_classify_drawn_digits(tmp_path, test_digits):
    """classify on PNG/JPEG drawings of test digits (black on white, grey, RGB, transparent):
    PRE-5 then the bundled model; nearly all top-1 predictions are right."""
    counts, labels = test_digits
    paths = []
    for i, mode in zip(range(12), ["L", "RGB", "RGBA"] * 4, strict=True):
        path = tmp_path / f"digit{i}.{'jpg' if mode == 'RGB' else 'png'}"
        _digit_png(path, counts[i], mode=mode)
        paths.append(path.name)
    result = _run("classify", *paths, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said, header, *rest = result.stdout.splitlines()
    assert said.startswith("image files: one handwritten digit per image") and "40 x 40" in said
    lines = [ln.split() for ln in rest]
    assert [ln[0] for ln in lines] == paths
    top1 = [int(ln[3]) for ln in lines]
    assert sum(p == y for p, y in zip(top1, labels[:12], strict=True)) >= 10
    assert all(ln[1] == "6" for ln in lines)  # full depth without early exit


def test_classify_npy_reports_exit_depths(tmp_path, capsys):
    """classify on a .npy batch of test canvases with per-sample early exit: classes and exit
    depths are the bundled model's own for the same call (EXIT-3, EXIT-4)."""
    x = cluttered.test_set()[0][:20]
    np.save(tmp_path / "x.npy", x)
    assert main(["classify", str(tmp_path / "x.npy"), "--depth-tau", "0.9",
                 "--exit-policy", "per_sample", "--num-tokens", "8"]) == 0
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:]]
    model = ClassificationAdaPerceiver.from_pretrained(BUNDLED_MODEL)
    with torch.inference_mode():
        out = model(torch.from_numpy(x), depth_tau=0.9, exit_policy="per_sample", num_tokens=8)
    assert [int(ln[1]) for ln in lines] == out.exit_depths.tolist()
    assert [int(ln[3]) for ln in lines] == out.logits[:, 0].argmax(-1).tolist()
    assert len(set(out.exit_depths.tolist())) > 1  # the exit really is per sample


def test_classify_names_imagenet_classes(tmp_path, capsys):
    """A 1000-class checkpoint without adaperceiver.json gets the ImageNet-1K names and the
    published evaluation transform (PRE-1..3) on a JPEG."""
    config = oracle.tiny_config()
    config.update(num_classes=1000, img_size=16)
    oracle.save_checkpoint(tmp_path / "ck", config, oracle.random_weights(config, seed=1))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
                    ).save(tmp_path / "photo.jpg")
    assert main(["classify", "--checkpoint", str(tmp_path / "ck"),
                 str(tmp_path / "photo.jpg")]) == 0
    out = capsys.readouterr().out
    names = (ROOT / "adaperceiver" / "data" / "imagenet_classes.tsv").read_text().splitlines()
    assert out.startswith("image files: any RGB photo")
    shown = out.splitlines()[2].split("  ")[-1]
    assert shown.split(" (")[0] in {n.split("\t")[1].split(",")[0] for n in names}
    assert len(shown.split("), ")) == 5


def test_train_writes_a_published_layout_checkpoint(tmp_path):
    """train (3 steps): config.json holds exactly the constructor keys (CKPT-2) and the
    checkpoint loads with from_pretrained and the oracle (CKPT-1); metadata records how."""
    result = _run("train", "--out", "ck", "--steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert set(config) == set(oracle.default_config(embed_dim=8, num_heads=2, depth=1,
                                                    mask_token_grans=[1], mat_dims=[8]))
    ClassificationAdaPerceiver.from_pretrained(tmp_path / "ck")
    oracle.load_checkpoint(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "adaperceiver.json").read_text())
    assert meta["training"]["command"] == "adaperceiver train --out ck --steps 3"
    assert meta["training"]["steps"] == 3 and meta["training"]["seed"] == 0
    grid = len(RECIPE["mask_token_grans"]) * RECIPE["depth"] * len(RECIPE["mat_dims"])
    assert len(meta["test_accuracy"]["correct"]) == grid + 5 * 2  # + 5 tau x 2 policies
    log = meta["training"]["log"]  # one (shorter) loss window, one evaluation at the end
    assert log["loss"][0][0] == 3 and math.isfinite(log["loss"][0][1]) and len(log["loss"]) == 1
    assert [step for step, _ in log["full_budget_accuracy"]] == [3]
    assert "N=16 depth=6 width=64" in result.stdout  # the per-budget table


def _write_npy_header(path: Path, shape: tuple[int, ...], descr: str = "<f4") -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(bytes(64))


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    _write_npy_header(d / "huge.npy", (10**6, 3, 1000, 1000))
    np.save(d / "complex.npy", np.ones((1, 1, 8, 8), dtype=np.complex64))
    np.save(d / "bool.npy", np.ones((1, 1, 8, 8), dtype=bool))
    np.save(d / "big.npy", np.full((1, 1, 8, 8), 1e300))
    np.save(d / "wrong_size.npy", np.zeros((1, 3, 16, 16), dtype=np.float32))
    np.save(d / "ok.npy", np.zeros((1, 1, 8, 8), dtype=np.float32))
    np.save(d / "ok16.npy", np.zeros((1, 1, 16, 16), dtype=np.float32))
    (d / "text.npy").write_text("hello\n")
    (d / "text.png").write_text("not an image\n")
    (d / "nonempty").mkdir()
    (d / "nonempty" / "f").write_text("x")
    (d / "afile").write_text("x")
    config = oracle.tiny_config()
    oracle.save_checkpoint(d / "tiny", config, oracle.random_weights(config))
    (d / "broken").mkdir()
    (d / "broken" / "config.json").write_text("{not json")
    distill = oracle.tiny_config("distill")
    oracle.save_checkpoint(d / "distill", distill, oracle.random_weights(distill))
    return d


# (argv with {d} for the bad-input folder, exit status, a phrase the one-line message holds)
ERROR_CASES = [
    (["classify", "{d}/missing.png"], 1, "no such file"),
    (["classify", "{d}/text.png"], 1, "not a readable image"),
    (["classify", "{d}/huge.npy"], 1, "header claims shape (1000000, 3, 1000, 1000)"),
    (["classify", "{d}/complex.npy"], 1, "must hold floats"),
    (["classify", "{d}/bool.npy"], 1, "got dtype bool"),
    (["classify", "{d}/big.npy"], 1, "float32 range"),
    (["classify", "{d}/text.npy"], 1, "not a readable .npy"),
    (["classify", "/dev/urandom"], 1, "not a regular file"),
    (["classify", "{d}/wrong_size.npy"], 1, "x must"),
    (["classify", "{d}/ok.npy", "{d}/ok16.npy"], 1, "different shapes"),
    (["classify", "{d}/ok.npy", "--exit-policy", "per_sample"], 1, "--exit-policy needs"),
    (["classify", "{d}/ok.npy", "--num-tokens", str(10**30)], 2, "--num-tokens"),
    (["classify", "{d}/ok.npy", "--num-tokens", "0"], 2, "--num-tokens"),
    (["classify", "{d}/ok.npy", "--num-tokens", "70000"], 2, "--num-tokens"),
    (["classify", "{d}/ok.npy", "--mat-dim", "999"], 1, "--mat-dim must be in 1..64"),
    (["classify", "{d}/ok.npy", "--depth", "9"], 1, "--depth must be in 1..6"),
    (["classify", "{d}/ok.npy", "--depth-tau", "1.5"], 2, "--depth-tau"),
    (["classify", "{d}/ok.npy", "--depth", "2", "--depth-tau", "0.5"], 2, "not allowed with"),
    (["classify", "{d}/ok.npy", "--checkpoint", "{d}/no-such-dir"], 1, "no-such-dir"),
    (["classify", "{d}/ok.npy", "--checkpoint", "{d}/broken"], 1, "not valid JSON"),
    (["classify", "{d}/ok.npy", "--checkpoint", "{d}/distill"], 1, "DistillAdaPerceiver"),
    (["classify", "{d}/ok.npy", "--checkpoint", "{d}/tiny"], 1, "x must"),
    (["sweep", "--data", "{d}/missing"], 1, "not a directory"),
    (["sweep", "--checkpoint", "{d}/tiny"], 1, "the bundled set 'cluttered' holds 1 x 40 x 40"),
    (["sweep", "--out", "{d}/afile"], 1, "not a directory"),
    (["sweep", "--budget", "-1"], 2, "--budget"),
    (["sweep", "--out", "{d}/sweep", "--budget", "1e-9"], 1, "below the cheapest"),
    (["demo", "--out", "{d}/no/such/dir/plot.png"], 1, "does not exist"),
    (["train", "--out", "{d}/nonempty"], 1, "not an empty directory"),
    (["train", "--out", "{d}/t", "--seed", "-1"], 2, "--seed"),
    (["train", "--out", "{d}/t", "--lr", "nan"], 2, "--lr"),
    (["nonsense"], 2, "invalid choice"),
]


@pytest.mark.parametrize("argv, status, phrase", ERROR_CASES,
                         ids=[" ".join(c[0])[:60] for c in ERROR_CASES])
def test_every_error_is_one_line(bad_inputs, capsys, argv, status, phrase):
    """Bad input: the given exit status, one line on stderr naming the problem, no traceback."""
    argv = [a.replace("{d}", str(bad_inputs)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == status
    assert len(err.strip().splitlines()) == 1, err
    assert phrase in err
    assert "Traceback" not in err


def test_errors_in_a_subprocess_have_no_traceback(tmp_path, bad_inputs):
    """The installed entry point behaves the same: one line, status 1 (or 2 for flags)."""
    result = _run("classify", str(bad_inputs / "huge.npy"), cwd=tmp_path)
    assert (result.returncode, len(result.stderr.strip().splitlines())) == (1, 1), result.stderr
    result = _run("classify", "x.png", "--seed", "1", cwd=tmp_path)
    assert (result.returncode, len(result.stderr.strip().splitlines())) == (2, 1), result.stderr
