"""Streaming-sweep benchmark: ``python -m adaperceiver.bench_sweep [--dir DIR] [--counts
1000,20000] [--throughput-images 256]``.

1. Memory: generates JPEGs at an ImageNet-like size (500 x 375, smooth random content,
   quality 90, in 10 synset folders; kept in ``--dir`` between runs), then runs
   ``adaperceiver sweep`` as a subprocess on folders of each ``--counts`` images with a
   small random 1000-class model at 224 px (``SMALL``) and reports the peak resident memory
   (sampled from /proc every 50 ms) of the process tree (main process + DataLoader
   workers) and of its largest process, over the run and per quarter of it (flat quarters:
   memory does not grow as images go by), with the wall time.
2. Throughput: a mid-size random model (``MID``): the sweep's streaming pass
   (``streaming.run_shard``, 2 DataLoader workers) over ``--throughput-images`` images,
   against the same evaluation work (``evaluation.batch_counts``: one anytime pass per
   width plus the exit rows) on a batch decoded beforehand, in the same process with the
   same threads. The time ratio shows how much data loading the workers fail to hide.
3. The published size (``bench.PUBLISHED``, random weights): seconds per image of the
   sweep's per-batch work on this machine's CPU, for the README's time estimate.

Numbers are from one run on whatever machine runs it; on a shared machine compare ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .bench import PUBLISHED, randomize
from .cli import checkpoint
from .cli.dataset import image_folder
from .cli.device import place
from .cli.distributed import World
from .cli.evaluation import Counts, batch_counts, make_grid
from .cli.streaming import Settings, run_shard
from .flops import anytime_flops
from .model import ClassificationAdaPerceiver

SIZE = (500, 375)  # width, height: a typical ImageNet-val photo
CLASSES = 10
SMALL = dict(embed_dim=64, num_heads=2, depth=4, max_latent_tokens=32, ffn_ratio=2.0,
             mask_token_grans=[8, 16, 32], mat_dims=[32, 64], img_size=224, patch_size=16,
             num_classes=1000)
MID = dict(embed_dim=384, num_heads=6, depth=8, max_latent_tokens=128, ffn_ratio=4.0,
           mask_token_grans=[32, 64, 128], mat_dims=[192, 384], img_size=224, patch_size=16,
           num_classes=1000)


def synsets() -> list[str]:
    wnids, _ = checkpoint.imagenet_classes()
    return wnids[:CLASSES]


def generate(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs in ``root``/<synset>/ (round-robin over classes); existing files are
    kept, so a larger set reuses a smaller one's files."""
    rng = np.random.default_rng(seed)
    folders = synsets()
    for i in range(count):
        path = root / folders[i % CLASSES] / f"{i:06d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # (h, w, RGB) -> smooth
        Image.fromarray(coarse).resize(SIZE, Image.BILINEAR).save(path, quality=90)
    return root


def subset(source: Path, target: Path, count: int) -> Path:
    """A folder of the first ``count`` images of ``source`` (hard links)."""
    folders = synsets()
    for i in range(count):
        link = target / folders[i % CLASSES] / f"{i:06d}.jpg"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(source / folders[i % CLASSES] / f"{i:06d}.jpg", link)
    return target


def save_model(directory: Path, config: dict) -> Path:
    if not (directory / "config.json").exists():
        torch.manual_seed(0)
        model = ClassificationAdaPerceiver(**config).eval()
        randomize(model)
        model.save_pretrained(directory)
    return directory


def _tree_rss(pid: int) -> tuple[int, int]:
    """(resident bytes of ``pid`` and its descendants, of the largest of them), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    sizes, todo = [], [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            pages = int(Path(f"/proc/{p}/statm").read_text().split()[1])
        except (OSError, IndexError):
            continue
        sizes.append(pages * os.sysconf("SC_PAGE_SIZE"))
    return sum(sizes), max(sizes, default=0)


def run_measured(argv: list[str], parts: int = 4) -> tuple[float, list[tuple[int, int]]]:
    """(seconds, per ``parts`` consecutive stretches of the run's time: the peak RSS bytes of
    the process tree and of its largest process) of a command, sampled every 50 ms."""
    start = time.perf_counter()
    log = tempfile.TemporaryFile("w+")  # the progress bar's output (a pipe would fill up)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, text=True)
    samples = []
    while process.poll() is None:
        samples.append((time.perf_counter() - start, *_tree_rss(process.pid)))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        log.seek(0)
        raise SystemExit(f"failed: {' '.join(argv)}\n{log.read()[-2000:]}")
    peaks = []
    for k in range(parts):
        part = [(tree, one) for t, tree, one in samples
                if k * seconds / parts <= t < (k + 1) * seconds / parts] or [(0, 0)]
        peaks.append((max(tree for tree, _ in part), max(one for _, one in part)))
    return seconds, peaks


def sweep_argv(ck: Path, data: Path, out: Path, workers: int, batch: int,
               threads: int) -> list[str]:
    return [sys.executable, "-m", "adaperceiver", "sweep", "--checkpoint", str(ck), "--data",
            str(data), "--out", str(out), "--force", "--workers", str(workers),
            "--batch-size", str(batch), "--threads", str(threads), "--device", "cpu"]


def throughput(ck: Path, data: Path, images: int, batch: int, threads: int, workers: int,
               rounds: int) -> list[tuple[float, float]]:
    """Per round, seconds of (the sweep's streaming pass with ``workers`` DataLoader workers,
    the same per-batch work on one batch decoded beforehand, repeated) over ``images`` //
    ``rounds`` images; the rounds interleave the two, so a change of load hits both."""
    torch.set_num_threads(threads)
    loaded = checkpoint.load(str(ck))
    source = image_folder(data, loaded)
    c = loaded.model.config
    grid = make_grid(c, c["img_size"])
    placement = place("cpu", "fp32", World())
    settings = Settings(batch_size=batch, workers=workers, progress=False)
    x = torch.stack([source.dataset[i][0] for i in range(batch)])
    y = torch.tensor([source.dataset[i][1] for i in range(batch)])
    per_round = images // rounds // batch * batch
    times = []
    with torch.inference_mode():
        batch_counts(loaded.model, x, y, grid)  # warm-up
        for k in range(rounds):
            start = time.perf_counter()
            run_shard(loaded.model, source, grid, range(k * per_round, (k + 1) * per_round),
                      placement, settings, done=0, counts=Counts.zeros(grid),
                      checkpoint=lambda *_: None)
            streamed = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(per_round // batch):
                batch_counts(loaded.model, x, y, grid)
            times.append((streamed, time.perf_counter() - start))
    return times


def published_seconds_per_image(batch: int, threads: int) -> tuple[float, float]:
    """(seconds per image of the sweep's work at the published size, grid GFLOPs per image
    of the 3 anytime passes)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ClassificationAdaPerceiver(**PUBLISHED).eval()
    randomize(model)
    grid = make_grid(model.config, 224)
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))
    with torch.inference_mode():
        batch_counts(model, x, y, grid)  # warm-up
        start = time.perf_counter()
        batch_counts(model, x, y, grid)
    gflops = sum(anytime_flops(model.config, mat_dim=m, image_size=224).grid
                 for m in model.config["mat_dims"]) / 1e9
    return (time.perf_counter() - start) / batch, gflops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(),
                                                      "adaperceiver-bench-sweep"))
    parser.add_argument("--counts", default="1000,20000")
    parser.add_argument("--throughput-images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: "
                        "memory, throughput, published")
    args = parser.parse_args()
    root = Path(args.dir)
    counts = [int(c) for c in args.counts.split(",")]
    skip = set(args.skip.split(","))
    print(f"images {SIZE[0]}x{SIZE[1]} JPEG in {root}; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    start = time.perf_counter()
    generate(root / "all", max(counts + [args.throughput_images]))
    print(f"generated/checked {max(counts)} images in {time.perf_counter() - start:.0f} s",
          flush=True)
    if "memory" not in skip:
        small = save_model(root / "small-model", SMALL)
        for count in counts:
            data = subset(root / "all", root / f"set-{count}", count)
            seconds, peaks = run_measured(sweep_argv(
                small, data, root / f"out-{count}", 2, args.batch_size, args.threads))
            mib = [f"{tree / 2**20:.0f}/{one / 2**20:.0f}" for tree, one in peaks]
            print(f"memory: {count:>6} images, 2 workers, {seconds:.0f} s ({count / seconds:.0f} "
                  f"img/s): peak RSS of the process tree / of its largest process "
                  f"{max(t for t, _ in peaks) / 2**20:.0f} / {max(o for _, o in peaks) / 2**20:.0f}"
                  f" MiB; per quarter of the run {', '.join(mib)} MiB", flush=True)
    if "throughput" not in skip:
        mid = save_model(root / "mid-model", MID)
        n = args.throughput_images
        data = subset(root / "all", root / f"set-{n}", n)
        times = throughput(mid, data, n, args.batch_size, args.threads, 2, args.rounds)
        streamed, alone = (sum(t[i] for t in times) for i in (0, 1))
        ratios = sorted(s / a for s, a in times)
        print(f"throughput ({args.threads} torch thread(s), {n} images in {len(times)} "
              f"interleaved rounds): streamed with 2 workers {n / streamed:.2f} img/s, the same "
              f"work on a decoded batch {n / alone:.2f} img/s; streamed / alone time "
              f"{streamed / alone:.2f} overall, per round {', '.join(f'{r:.2f}' for r in ratios)}"
              " (sorted)", flush=True)
    if "published" not in skip:
        per_image, gflops = published_seconds_per_image(8, os.cpu_count() or 1)
        print(f"published size: {per_image:.2f} s per image for the sweep's 3 anytime passes "
              f"({gflops:.1f} GFLOPs per image) on {os.cpu_count()} CPU threads; 50,000 "
              f"images: {50000 * per_image / 3600:.0f} h on this CPU", flush=True)


if __name__ == "__main__":
    main()
