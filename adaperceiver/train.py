"""``adaperceiver train``: train the bundled cluttered-digits model with the published
joint objective (upstream-behaviour.md section 6) and write a published-layout checkpoint.

Each step draws a fresh batch of training canvases (``adaperceiver.cluttered``: train-split
digits among clutter) and runs one forward at N = max_latent_tokens with the block mask,
one FFN width per sample drawn from ``mat_dims``, reading the anytime grid (write-outs from
a prefix of g latents after every block, ``model.anytime``):

    token loss = mean over granularities g of CE(logits[final block, g])
    depth loss = mean over blocks l of CE(logits[l, g_l]), g_l drawn per block
    loss       = token loss + depth loss

AdamW with a linear warm-up and a cosine decay of the learning rate. Weights start from
N(0, init_std^2) with init_std = 0.08: from the usual 0.02 the loss sits at 2 ln 10 for
thousands of steps on this task (measured: no progress in 800 steps), since the canvas is
mostly empty and every signal passes several small projections. Everything random comes
from the seed (canvases: ``cluttered.TrainStream``; widths and granularities: one seeded
``torch.Generator``), so a run is repeatable for a given seed, thread count and CPU.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from . import cluttered
from .cli.checkpoint import METADATA_NAME
from .cli.evaluation import Row
from .digits import DIGIT_NAMES
from .model import ClassificationAdaPerceiver

# The bundled model's recipe: 40 x 40 cluttered canvases, 8 x 8 patches (25 patches).
RECIPE: dict[str, Any] = dict(
    embed_dim=64, num_heads=4, depth=6, max_latent_tokens=16, ffn_ratio=2.0,
    ls_init_values=0.1, mask_token_grans=[1, 2, 4, 8, 16], mat_dims=[16, 32, 48, 64],
    img_size=cluttered.CANVAS, in_channels=1, patch_size=8, num_classes=10)


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and schedule: AdamW(lr, weight_decay), linear warm-up over ``warmup``
    steps, then cosine decay to 0 at ``steps``."""

    steps: int = 8000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    init_std: float = 0.08
    seed: int = 0
    eval_every: int = 500  # steps between evaluations of the full budget on the test set


@dataclass
class TrainResult:
    model: ClassificationAdaPerceiver
    losses: list[float] = field(default_factory=list)  # one per step
    test_accuracy: list[tuple[int, float]] = field(default_factory=list)  # (step, full budget)


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or inf: the settings make training diverge."""


def _settings_note(settings: TrainSettings) -> str:
    return (f"with lr {settings.lr:g} and weight_decay {settings.weight_decay:g}: training "
            "diverged; lower the learning rate (--lr) or the weight decay (--weight-decay)")


def check_finite_loss(loss: Tensor, step: int, settings: TrainSettings, bar: tqdm) -> None:
    """``TrainingDiverged`` at the first non-finite loss, before it reaches the weights (the
    progress bar closed first, so the error is the last line)."""
    value = float(loss.detach())
    if not math.isfinite(value):
        bar.close()
        raise TrainingDiverged(f"the training loss is {value} at step {step} "
                               f"{_settings_note(settings)}")


def joint_loss(model: ClassificationAdaPerceiver, x: Tensor, y: Tensor,
               generator: torch.Generator) -> Tensor:
    """Token loss over granularities at the final block + depth loss over blocks, each block
    at one drawn granularity, from one anytime pass with per-sample widths."""
    mat_dims = model.config["mat_dims"]
    widths = [mat_dims[i] for i in torch.randint(len(mat_dims), (x.shape[0],),
                                                 generator=generator).tolist()]
    logits = model.anytime(x, mat_dim=widths).logits  # (B, L, G, C)
    B, L, G, C = logits.shape
    token_loss = F.cross_entropy(logits[:, -1].reshape(B * G, C), y.repeat_interleave(G))
    grans = torch.randint(G, (L,), generator=generator)
    per_block = logits[:, torch.arange(L), grans]  # (B, L, C): block l at granularity g_l
    depth_loss = F.cross_entropy(per_block.reshape(B * L, C), y.repeat_interleave(L))
    return token_loss + depth_loss


@torch.inference_mode()
def accuracy(model: ClassificationAdaPerceiver, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy at the full budget."""
    return float((model(x).logits[:, 0].argmax(-1) == y).double().mean())


def train(config: dict[str, Any], settings: TrainSettings,
          test: tuple[np.ndarray, np.ndarray] | None = None,
          progress: bool = True) -> TrainResult:
    """Train a fresh model of ``config`` on canvases of ``cluttered.TrainStream(seed)``;
    every ``eval_every`` steps and at the end, the full-budget accuracy on ``test``."""
    stream = cluttered.TrainStream(settings.seed, settings.batch_size)
    x_test, y_test = (None, None) if test is None else (torch.from_numpy(a) for a in test)
    generator = torch.Generator().manual_seed(settings.seed)
    model = ClassificationAdaPerceiver(**config)
    model.init_weights(settings.seed, std=settings.init_std)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    total, warmup = settings.steps, settings.warmup
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        1.0, (step + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * step / total)))
    result = TrainResult(model)
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, file=sys.stderr)
    for step in range(total):
        x, y = (torch.from_numpy(a) for a in stream.batch(step))
        loss = joint_loss(model, x, y, generator)
        check_finite_loss(loss, step + 1, settings, bar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        result.losses.append(float(loss.detach()))
        bar.update()
        if x_test is not None and ((step + 1) % settings.eval_every == 0 or step + 1 == total):
            model.eval()
            result.test_accuracy.append((step + 1, accuracy(model, x_test, y_test)))
            model.train()
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}",
                            test_acc=f"{result.test_accuracy[-1][1]:.3f}")
    bar.close()
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingDiverged(f"the weights are not finite after the last step ({total}) "
                               f"{_settings_note(settings)}")
    model.eval()
    return result


def machine() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and the platform."""
    try:
        names = [line.split(":", 1)[1].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor() or 'unknown CPU'}, {platform.platform()}"


LOG_WINDOW = 50  # steps per point of the stored loss curve


def training_log(result: TrainResult, monitored: str) -> dict[str, Any]:
    """The run's curves, small enough to keep with the checkpoint: [last step, mean training
    loss] of each window of LOG_WINDOW steps (the last window may be shorter), and [step,
    accuracy] of the full budget on the monitored canvases (``monitored`` says which) at
    every evaluation. The docs draw the training chapter's figures from it."""
    losses, w = result.losses, LOG_WINDOW
    return {"loss_window": w,
            "loss": [[min(i + w, len(losses)), round(float(np.mean(losses[i:i + w])), 5)]
                     for i in range(0, len(losses), w)],
            "full_budget_accuracy": [[step, round(acc, 5)] for step, acc in
                                     result.test_accuracy],
            "monitored": monitored}


def metadata(settings: TrainSettings, command: Sequence[str], seconds: float, threads: int,
             rows: list[Row], test_sha256: str, log: dict[str, Any]) -> dict[str, Any]:
    """The adaperceiver.json written next to config.json: labels, preprocessing, data, how it
    was trained (command, seed, threads, versions, machine, the curves of ``training_log``)
    and the measured test results (correct images per configuration, from which any
    interval follows)."""
    grid = [r for r in rows if r.tau is None]
    cheapest, full = min(grid, key=lambda r: r.gflops), max(grid, key=lambda r: r.gflops)
    return {
        "labels": list(DIGIT_NAMES),
        "preprocessing": {"kind": "digit-canvas", "canvas": cluttered.CANVAS,
                          "scale": cluttered.SCALE},
        "data": {"name": "cluttered UCI digits (adaperceiver.cluttered; UCI optical "
                         "recognition of handwritten digits, CC BY 4.0)",
                 "train": f"canvases drawn on the fly from split 'train', seed {settings.seed}",
                 "test": {"canvases": cluttered.TEST_CANVASES, "seed": cluttered.TEST_SEED,
                          "split": "test", "sha256": test_sha256}},
        "training": {"command": " ".join(command), **asdict(settings), "threads": threads,
                     "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "machine": machine(),
                     "seconds": round(seconds, 1), "log": log},
        "test_accuracy": {"num_images": cluttered.TEST_CANVASES, "full": full.name,
                          "cheapest": cheapest.name,
                          "correct": {r.name: round(r.accuracy * cluttered.TEST_CANVASES)
                                      for r in rows}},
    }


def model_card(info: dict[str, Any]) -> str:
    """A short README.md for the checkpoint directory, from its metadata."""
    acc, train = info["test_accuracy"], info["training"]
    n = acc["num_images"]
    return (
        "# AdaPerceiver trained on cluttered handwritten digits\n\n"
        "An AdaPerceiver classifier (published checkpoint layout: `config.json` + "
        f"`model.safetensors`) for {cluttered.CANVAS} x {cluttered.CANVAS} canvases holding "
        "one UCI digit among clutter (`adaperceiver.cluttered`), trained by this project with\n"
        f"`{train['command']}` (seed {train['seed']}, {train['threads']} thread(s), torch "
        f"{train['torch']}, {train['seconds']:.0f} s on {train['machine']}).\n\n"
        f"Test accuracy ({n} fixed test canvases made only from test-split digits): "
        f"{100 * acc['correct'][acc['full']] / n:.2f}% at the full budget ({acc['full']}), "
        f"{100 * acc['correct'][acc['cheapest']] / n:.2f}% at the cheapest "
        f"({acc['cheapest']}). "
        f"Every configuration's count is in `{METADATA_NAME}`, with the labels and the "
        "preprocessing.\n")
