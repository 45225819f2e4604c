"""``adaperceiver sweep`` streaming over an image folder: counts against a direct evaluation
of the whole set, exit costs with their confidence checks, labels, refusals, resume after an
interrupt, ``--save-logits`` and torchrun with 2 CPU processes (gloo) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reference_numpy as oracle
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli import checkpoint, main
from adaperceiver.cli.dataset import image_folder
from adaperceiver.cli.distributed import World, batch_range
from adaperceiver.cli.evaluation import EXIT_POLICIES, EXIT_TAUS
from adaperceiver.flops import flops
from adaperceiver.stats import wilson_interval

ROOT = Path(__file__).resolve().parents[2]
SYNSETS = ("n01440764", "n01443537", "n01484850")  # the first three ImageNet-1K classes
COUNTS = (5, 4, 4)  # 13 images: 5 batches of 3, the last of 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random 1000-class checkpoint (ImageNet names and transform, 16 px) and a folder
    of 13 JPEGs of different sizes in three synset sub-folders."""
    d = tmp_path_factory.mktemp("sweep")
    config = oracle.tiny_config()
    config.update(num_classes=1000)
    oracle.save_checkpoint(d / "ck", config, oracle.random_weights(config, seed=3))
    rng = np.random.default_rng(0)
    for wnid, count in zip(SYNSETS, COUNTS, strict=True):
        (d / "data" / wnid).mkdir(parents=True)
        for i in range(count):
            h, w = rng.integers(17, 40, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                d / "data" / wnid / f"img{i}.jpg")
    return d


def _sweep(d: Path, out: str, *extra: str) -> int:
    return main(["sweep", "--checkpoint", str(d / "ck"), "--data", str(d / "data"),
                 "--out", str(d / out), "--batch-size", "3", "--workers", "0", "--threads",
                 "1", *extra])


def _results(d: Path, out: str) -> dict:
    return json.loads((d / out / "results.json").read_text())


@pytest.fixture(scope="module")
def single(setup):
    """One uninterrupted single-process sweep of the folder (the reference of the others)."""
    assert _sweep(setup, "single", "--save-logits") == 0
    return _results(setup, "single")


@pytest.mark.parametrize("n, bs, W", [(13, 3, 2), (13, 3, 4), (13, 3, 7), (100, 64, 3),
                                      (1, 5, 2), (50000, 64, 8), (7, 1, 3)])
def test_batch_ranges_cover_every_image_once(n, bs, W):
    """Ranks take whole batches: every image exactly once, no padding, and every batch is one
    of the single process's batches (starts at a multiple of the batch size)."""
    ranges = [batch_range(n, bs, World(r, W)) for r in range(W)]
    assert [i for r in ranges for i in r] == list(range(n))
    assert all(r.start % bs == 0 for r in ranges if len(r))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= bs


def test_counts_equal_a_direct_evaluation(setup, single):
    """Each grid row is the anytime grid of the whole set in one call (ANY-1); each exit row
    is forward(depth_tau, exit_policy) on the same batches of 3 (EXIT-2..4): accuracy, top-5
    and NLL, with the Wilson interval of the count; 13 images in the meta."""
    loaded = checkpoint.load(str(setup / "ck"))
    data = image_folder(setup / "data", loaded)
    x = torch.stack([data.dataset[i][0] for i in range(len(data))])
    y = torch.tensor([data.dataset[i][1] for i in range(len(data))])
    assert single["meta"]["num_images"] == 13 and single["meta"]["images_per_rank"] == [13]
    rows = {r["name"]: r for r in single["rows"]}
    model = loaded.model
    with torch.inference_mode():
        for m in model.config["mat_dims"]:
            out = model.anytime(x, mat_dim=m)
            for li, depth in enumerate(out.depths):
                for gi, g in enumerate(out.granularities):
                    logits = out.logits[:, li, gi].double()
                    row = rows[f"N={g} depth={depth} width={m}"]
                    k = int((logits.argmax(-1) == y).sum())
                    assert round(row["accuracy"] * 13) == k
                    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(k, 13))
                    top5 = (logits.topk(5, -1).indices == y[:, None]).any(-1).sum()
                    assert round(row["top5"] * 13) == int(top5)
                    nll = -logits.log_softmax(-1)[torch.arange(13), y].mean()
                    assert row["nll"] == pytest.approx(float(nll), rel=1e-5)
        for tau in EXIT_TAUS:
            for policy in EXIT_POLICIES:
                outs = [model(x[s:s + 3], depth_tau=tau, exit_policy=policy)
                        for s in range(0, 13, 3)]
                logits = torch.cat([o.logits[:, 0] for o in outs])
                depths = torch.cat([o.exit_depths for o in outs]).double()
                row = next(r for r in single["rows"] if r["tau"] == tau
                           and r["policy"] == policy)
                assert round(row["accuracy"] * 13) == int((logits.argmax(-1) == y).sum())
                assert row["depth"] == pytest.approx(float(depths.mean()))
                assert (row["num_tokens"], row["width"]) == (16, 16)


def test_exit_gflops_include_the_confidence_checks(single):
    """An exit at depth e costs flops(depth=e) plus e - 1 more write + head evaluations
    (EXIT-1): the write's q, k, v, proj (2 D^2 + 2 N D^2 MACs), its scores and sum (2 N D)
    and the head D x C, counted here from the spec's shapes."""
    config = oracle.tiny_config()
    config.update(num_classes=1000)
    D, N, C = config["embed_dim"], 16, 1000
    check = 2 * (2 * D * D + 2 * N * D * D + 2 * N * D + D * C)
    for row in (r for r in single["rows"] if r["tau"] is not None):
        if row["depth"] == int(row["depth"]):  # every image left at the same depth
            e = int(row["depth"])
            expected = flops(config, depth=e) + (e - 1) * check
            assert row["gflops"] == pytest.approx(expected / 1e9, rel=1e-12)


def test_rows_are_sorted_by_compute_and_recorded(single):
    meta = single["meta"]
    gflops = [r["gflops"] for r in single["rows"]]
    assert gflops == sorted(gflops)
    assert meta["world_size"] == 1 and meta["precision"] == "float32"
    assert meta["engine"] == "torch"
    assert meta["device"] == "cpu" and meta["timing"] is None
    assert len(meta["checkpoint"]["checkpoint_sha256"]) == 64
    assert meta["data"]["num_images"] == 13 and len(meta["data"]["file_list_sha256"]) == 64
    assert "center crop 16" in meta["data"]["transform"]
    assert meta["software"]["torch"] == torch.__version__
    assert all(r["ms_per_image"] is None for r in single["rows"])


def test_save_logits_holds_every_depth_of_every_image(setup, single):
    """logits.npy (13, K, 1000): row i is the full-width anytime logits of image i with all N
    latents (the data's order), written batch by batch."""
    saved = np.load(setup / "single" / "logits.npy")
    loaded = checkpoint.load(str(setup / "ck"))
    data = image_folder(setup / "data", loaded)
    x = torch.stack([data.dataset[i][0] for i in range(len(data))])
    with torch.inference_mode():
        expected = loaded.model.anytime(x).logits[:, :, -1]
    assert saved.shape == (13, 3, 1000) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_interrupted_and_resumed_equals_uninterrupted(setup, single, capsys):
    """--stop-after 2 (an interrupt after 2 of 5 batches): exit 130, the saved state holds
    those 2 batches; --resume evaluates the other 3 and gives the same results."""
    assert _sweep(setup, "resumed", "--stop-after", "2", "--checkpoint-every", "100") == 130
    state = json.loads((setup / "resumed" / "partial" / "rank-0-of-1.json").read_text())
    assert state["batches_done"] == 2 and state["counts"]["images"] == 6
    assert not (setup / "resumed" / "results.json").exists()
    assert _sweep(setup, "resumed") == 1  # refuses to start over silently
    assert "--resume" in capsys.readouterr().err
    assert _sweep(setup, "resumed", "--resume") == 0
    assert "evaluating:  46%" in capsys.readouterr().err  # started after 6 of 13 images
    _assert_same(_results(setup, "resumed"), single)
    assert not (setup / "resumed" / "partial").exists()


def _assert_same(a: dict, b: dict) -> None:
    """Same rows: counts exactly (accuracy x n), sums of floats within tolerance."""
    assert [r["name"] for r in a["rows"]] == [r["name"] for r in b["rows"]]
    for r, s in zip(a["rows"], b["rows"], strict=True):
        assert (r["accuracy"], r["top5"], r["num_images"]) == (s["accuracy"], s["top5"],
                                                               s["num_images"])
        assert r["nll"] == pytest.approx(s["nll"], rel=1e-9)
        assert r["gflops"] == pytest.approx(s["gflops"], rel=1e-12)


def test_refuses_to_overwrite_without_force(setup, single, capsys):
    assert _sweep(setup, "single") == 1
    assert "already holds results.json" in capsys.readouterr().err
    assert _sweep(setup, "single", "--force", "--resume") == 1


def test_torchrun_two_processes_equal_one(setup, single):
    """torchrun --nproc-per-node 2 (gloo): ranks take 2 and 3 of the 5 batches (6 and 7
    images), rank 0 alone writes, and every row equals the single process's (batch_mean
    exits included: the batches are the same batches of 3)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "adaperceiver", "sweep", "--checkpoint", str(setup / "ck"), "--data",
         str(setup / "data"), "--out", str(setup / "two"), "--batch-size", "3",
         "--workers", "0", "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    two = _results(setup, "two")
    assert two["meta"]["world_size"] == 2 and two["meta"]["images_per_rank"] == [6, 7]
    assert result.stdout.count("wrote the plot") == 1  # rank 0 alone prints
    _assert_same(two, single)


def test_folders_must_match_class_names(setup, tmp_path, capsys):
    """Folders named neither as the checkpoint's classes nor as synsets: an error listing
    them; --labels sorted needs one folder per class."""
    for name in ("zero", "one", "n01440764"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(tmp_path / "data" / name / "a.png")
    code = main(["sweep", "--checkpoint", str(setup / "ck"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "2 of 3 sub-folders match none" in err and "one, zero" in err
    assert len(err.strip().splitlines()) == 1
    code = main(["sweep", "--checkpoint", str(setup / "ck"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out"), "--labels", "sorted"])
    assert code == 1 and "has 3 class sub-folders but the checkpoint has 1000" in \
        capsys.readouterr().err


def test_unreadable_image_is_one_line(setup, tmp_path, capsys):
    (tmp_path / "data" / SYNSETS[0]).mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "data" / SYNSETS[0] / "a.png")
    (tmp_path / "data" / SYNSETS[0] / "b.jpg").write_text("not an image")
    code = main(["sweep", "--checkpoint", str(setup / "ck"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "b.jpg: not a readable image" in err
    assert "Traceback" not in err


def test_untrained_budgets_warn_once_and_are_marked(tmp_path, capsys):
    """--num-tokens 12 and width 40 lie outside the 8 x 8 digits model's trained 4, 8, 16 and
    32, 48, 64: one warning line, and exactly their rows flagged '!'."""
    from adaperceiver.digits import DIGITS_MODEL

    assert main(["sweep", "--checkpoint", str(DIGITS_MODEL), "--data", "digits", "--out",
                 str(tmp_path / "o"), "--num-tokens", "12", "--widths", "40,64",
                 "--threads", "1"]) == 0
    captured = capsys.readouterr()
    warnings = [ln for ln in captured.err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "N=12" in warnings[0] and "width=40" in warnings[0]
    rows = json.loads((tmp_path / "o" / "results.json").read_text())["rows"]
    for r in rows:
        assert r["trained"] == (r["num_tokens"] in (4, 8) and r["width"] == 64), r["name"]
    flagged = [ln for ln in captured.out.splitlines()
               if ln.startswith(("N=", "exit")) and ln.rstrip().endswith("!")]
    assert len(flagged) == sum(not r["trained"] for r in rows) > 0


def test_bundled_digits_rows_equal_the_model(tmp_path):
    """--data digits: the full configuration's accuracy is the 8 x 8 digits model's own on
    its bundled test split."""
    from adaperceiver.digits import DIGITS_MODEL, load_digits

    assert main(["sweep", "--checkpoint", str(DIGITS_MODEL), "--data", "digits", "--out",
                 str(tmp_path / "o"), "--threads", "1"]) == 0
    rows = json.loads((tmp_path / "o" / "results.json").read_text())["rows"]
    full = next(r for r in rows if r["name"] == "N=16 depth=4 width=64")
    x, y = load_digits("test")
    model = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL)
    with torch.inference_mode():
        pred = model(torch.from_numpy(x)).logits[:, 0].argmax(-1).numpy()
    assert full["num_images"] == len(y) == 359
    assert round(full["accuracy"] * 359) == int((pred == y).sum())


@pytest.mark.gpu
def test_cuda_bf16_sweep_records_what_ran(setup, tmp_path):
    """On a GPU: --device cuda --precision bf16 runs and results.json says so."""
    out = tmp_path / "gpu"
    assert main(["sweep", "--checkpoint", str(setup / "ck"), "--data", str(setup / "data"),
                 "--out", str(out), "--device", "cuda", "--precision", "bf16"]) == 0
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["device"].startswith("cuda") and meta["precision"].startswith("bfloat16")


def test_time_measures_every_row_on_the_given_batches(setup, single):
    """--time 2: ms/img for every row, measured on the first 2 batches (6 images), recorded;
    the accuracies are those of the run without timing."""
    assert _sweep(setup, "timed", "--time", "2") == 0
    timed = _results(setup, "timed")
    assert timed["meta"]["timing"].startswith("6 images in 2 batches of 3")
    assert all(r["ms_per_image"] > 0 for r in timed["rows"])
    assert [r["accuracy"] for r in timed["rows"]] == [r["accuracy"] for r in single["rows"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "o"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA device is available" in err
    assert len(err.strip().splitlines()) == 1


def test_bf16_autocast_on_cpu_is_recorded(setup, single):
    """--precision bf16 on the CPU: results say bfloat16 autocast ran; top-1 of the full
    configuration within 2 of the 13 images of float32 (bfloat16 flips few argmaxes)."""
    assert _sweep(setup, "bf16", "--precision", "bf16", "--device", "cpu") == 0
    bf16 = _results(setup, "bf16")
    assert bf16["meta"]["precision"] == "bfloat16 autocast (weights float32)"
    full = {r["name"]: r for r in single["rows"]}["N=16 depth=3 width=16"]
    low = {r["name"]: r for r in bf16["rows"]}["N=16 depth=3 width=16"]
    assert abs(round(13 * full["accuracy"]) - round(13 * low["accuracy"])) <= 2
