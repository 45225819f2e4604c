"""``adaperceiver train``: train an AdaPerceiver on the bundled digits with the published
joint objective (upstream-behaviour.md section 6) and write a published-layout checkpoint.

Each step runs one forward at N = max_latent_tokens with the block mask, one FFN width per
sample drawn from ``mat_dims``, and reads the anytime grid (write-outs from a prefix of
g latents after every block, ``model.anytime``):

    token loss = mean over granularities g of CE(logits[final block, g])
    depth loss = mean over blocks l of CE(logits[l, g_l]), g_l drawn per block
    loss       = token loss + depth loss

AdamW with a cosine learning-rate decay; augmentation: every image shifted by -1, 0 or
+1 pixel along each axis (zero fill). Everything random comes from one seeded
``torch.Generator``, so a run is repeatable for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .cli import COMMANDS
from .cli.checkpoint import METADATA_NAME
from .cli.common import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    threads,
)
from .digits import DIGIT_NAMES, load_digits
from .files import atomic_directory, atomic_write, check_writable
from .model import ClassificationAdaPerceiver

# The bundled model's recipe: 8x8 grey digits, 2x2 patches (16 patches), 16 latents.
RECIPE: dict[str, Any] = dict(
    embed_dim=64, num_heads=4, depth=4, max_latent_tokens=16, ffn_ratio=2.0,
    ls_init_values=0.1, mask_token_grans=[4, 8, 16], mat_dims=[32, 48, 64], img_size=8,
    in_channels=1, patch_size=2, num_classes=10)


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and schedule: AdamW(lr, weight_decay), cosine decay over all steps."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0
    shift_prob: float = 0.5  # probability that an image gets a random shift
    max_steps: int | None = None  # stop early (tests); None = epochs * batches per epoch


@dataclass
class TrainResult:
    model: ClassificationAdaPerceiver
    losses: list[float] = field(default_factory=list)  # one per step
    test_accuracy: list[float] = field(default_factory=list)  # full budget, after each epoch


def shift_images(x: Tensor, generator: torch.Generator, prob: float = 1.0) -> Tensor:
    """Shift each image (B, C, H, W), with probability ``prob``, by dy, dx drawn from
    {-1, 0, 1}; zero fill."""
    B, _, H, W = x.shape
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H + 2, W + 2)
    offsets = torch.randint(0, 3, (B, 2), generator=generator)
    keep = torch.rand(B, generator=generator) >= prob  # these images stay in place
    offsets[keep] = 1
    return torch.stack([padded[b, :, dy:dy + H, dx:dx + W]
                        for b, (dy, dx) in enumerate(offsets.tolist())])


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
          data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
          progress: bool = True) -> TrainResult:
    """Train a fresh model of ``config`` on (train x, train y, test x, test y)."""
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in data)
    generator = torch.Generator().manual_seed(settings.seed)
    model = ClassificationAdaPerceiver(**config)
    model.init_weights(settings.seed)
    model.train()
    batches = math.ceil(len(x_train) / settings.batch_size)
    total = settings.epochs * batches
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    result = TrainResult(model)
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, file=sys.stderr)
    while len(result.losses) < total:
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            x = shift_images(x_train[idx], generator, settings.shift_prob)
            loss = joint_loss(model, x, y_train[idx], generator)
            check_finite_loss(loss, len(result.losses) + 1, settings, bar)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            result.losses.append(float(loss.detach()))
            bar.update()
            if len(result.losses) == total:
                break
        model.eval()
        result.test_accuracy.append(accuracy(model, x_test, y_test))
        model.train()
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", test_acc=f"{result.test_accuracy[-1]:.3f}")
    bar.close()
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingDiverged(f"the weights are not finite after the last step ({total}) "
                               f"{_settings_note(settings)}")
    model.eval()
    return result


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


@torch.inference_mode()
def grid_accuracy(model: ClassificationAdaPerceiver, x: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy in every (tokens, depth, width) configuration of the model's grid, keyed
    "N=.. depth=.. width=..", from one anytime pass per width."""
    found = {}
    for m in model.config["mat_dims"]:
        out = model.anytime(x, mat_dim=m)
        correct = (out.logits.argmax(-1) == y[:, None, None]).double().mean(0)  # (L, G)
        for li, depth in enumerate(out.depths):
            for gi, g in enumerate(out.granularities):
                found[f"N={g} depth={depth} width={m}"] = float(correct[li, gi])
    return found


def metadata(settings: TrainSettings, command: Sequence[str], seconds: float, threads: int,
             test_grid: dict[str, float]) -> dict[str, Any]:
    """The adaperceiver.json written next to config.json (labels, preprocessing, data, how it
    was trained, measured test accuracy)."""
    return {
        "labels": list(DIGIT_NAMES),
        "preprocessing": {"kind": "digits"},
        "data": {"name": "UCI optical recognition of handwritten digits (CC BY 4.0)",
                 "file": "adaperceiver/data/digits.npz", "train": "split 'train' (1438)",
                 "test": "split 'test' (359)"},
        "training": {"command": " ".join(command), "seed": settings.seed, "threads": threads,
                     "epochs": settings.epochs, "batch_size": settings.batch_size,
                     "lr": settings.lr, "weight_decay": settings.weight_decay,
                     "shift_prob": settings.shift_prob,
                     "seconds": round(seconds, 1)},
        "test_accuracy": {"min_over_grid": min(test_grid.values()), "grid": test_grid},
    }


def model_card(info: dict[str, Any]) -> str:
    """A short README.md for the checkpoint directory, from its metadata."""
    accuracy = info["test_accuracy"]
    full = max(accuracy["grid"], key=lambda k: [int(v.split("=")[1]) for v in k.split()])
    return (
        "# AdaPerceiver trained on the UCI handwritten digits\n\n"
        "An AdaPerceiver classifier (published checkpoint layout: `config.json` + "
        "`model.safetensors`) for 8x8 grey digits, trained by this project with\n"
        f"`{info['training']['command']}` (seed {info['training']['seed']}, "
        f"{info['training']['threads']} thread(s)).\n\n"
        f"Test accuracy (359 held-out digits): {100 * accuracy['grid'][full]:.2f}% at the full "
        f"budget ({full}), {100 * accuracy['min_over_grid']:.2f}% in the worst of the "
        f"{len(accuracy['grid'])} (tokens, depth, width) configurations. Data: "
        f"{info['data']['name']}; preprocessing and labels in `{METADATA_NAME}`.\n")


def run(args: argparse.Namespace) -> int:
    """``adaperceiver train``: train the recipe and write OUT/{config.json, model.safetensors,
    adaperceiver.json, README.md}, all or nothing (``files.atomic_directory``)."""
    out = Path(args.out)
    check_out(out, args.force)
    torch.set_num_threads(args.threads)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, seed=args.seed,
                             shift_prob=args.shift_prob, max_steps=args.max_steps)
    data = (*load_digits("train"), *load_digits("test"))
    started = time.perf_counter()
    result = train(RECIPE, settings, data)
    seconds = time.perf_counter() - started
    x_test, y_test = (torch.from_numpy(a) for a in data[2:])
    test_grid = grid_accuracy(result.model, x_test, y_test)
    info = metadata(settings, args.command_line, seconds, args.threads, test_grid)
    with atomic_directory(out, replace=OUT_FILES) as new:
        result.model.save_pretrained(new)
        with atomic_write(new / METADATA_NAME) as f:
            f.write((json.dumps(info, indent=2) + "\n").encode("utf-8"))
        with atomic_write(new / "README.md") as f:  # replaces the hub mixin's generic card
            f.write(model_card(info).encode("utf-8"))
    print(f"trained in {seconds:.0f} s; test accuracy at full budget "
          f"{result.test_accuracy[-1]:.4f}, lowest over the grid {min(test_grid.values()):.4f}")
    print(f"wrote {out}/config.json, model.safetensors, {METADATA_NAME}")
    return 0


# what --out holds after a run: an existing --out is replaced (with --force) only if it holds
# nothing else
OUT_FILES = frozenset({"config.json", "model.safetensors", METADATA_NAME, "README.md"})


def check_out(out: Path, force: bool) -> None:
    """Before training: --out is new, empty, or (with --force) an earlier output of this
    command, and its parent directory is writable."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a new or empty directory")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not force:
        raise ValueError(f"--out {out} already exists and is not an empty directory; pass "
                         "--force to replace an earlier checkpoint written by this command")
    if set(held) - OUT_FILES:
        raise ValueError(f"--out {out} holds files this command does not write "
                         f"({', '.join(sorted(set(held) - OUT_FILES)[:5])}); it is not "
                         "replaced, even with --force")
    check_writable(out.absolute().parent, f"--out {out}")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help=COMMANDS["train"][1],
        description="Train an AdaPerceiver on the bundled UCI digits with the published joint "
        "objective (token loss over granularities + depth loss over blocks, per-sample FFN "
        "widths, AdamW with cosine decay) and write a checkpoint in the published layout.")
    p.add_argument("--out", required=True,
                   help="the checkpoint directory to write: new or empty (an earlier output "
                   "of this command with --force)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out written by this command (default: refuse)")
    p.add_argument("--epochs", type=positive_int, default=TrainSettings.epochs,
                   help="passes over the train split (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=TrainSettings.batch_size,
                   help="images per step (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=TrainSettings.lr,
                   help="AdamW peak learning rate, decayed by a cosine (default: %(default)s)")
    p.add_argument("--weight-decay", type=non_negative_float,
                   default=TrainSettings.weight_decay,
                   help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--shift-prob", type=fraction, default=TrainSettings.shift_prob,
                   help="probability that a training image is shifted by up to 1 pixel "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=TrainSettings.seed,
                   help="seed of the initial weights and of every random draw "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=threads, default=1,
                   help="torch threads, at most the CPUs available; results are repeatable "
                   "for a seed and thread count (default: %(default)s)")
    p.add_argument("--max-steps", type=positive_int,
                   help="stop after this many steps (default: all epochs)")
    p.set_defaults(func=run)
