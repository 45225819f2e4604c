"""Where ``sweep`` runs: the device (``--device cpu|cuda|auto``) and the precision
(``--precision fp32|bf16``: float32, or bfloat16 autocast of the matrix products where the
device supports it)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial

import torch

from .common import DEVICES, CliError
from .distributed import World

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Placement:
    """The device this rank computes on and its precision; ``describe`` names both."""

    device: torch.device
    precision: str

    @property
    def autocast(self) -> Callable[[], AbstractContextManager]:
        """A context factory: bfloat16 autocast for "bf16", nothing for "fp32"."""
        if self.precision == "bf16":
            return partial(torch.autocast, self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext

    def describe(self) -> dict[str, str]:
        name = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                else "cpu")
        return {"device": str(self.device), "device_name": name,
                "precision": "float32" if self.precision == "fp32"
                else "bfloat16 autocast (weights float32)"}


def place(device: str, precision: str, world: World) -> Placement:
    """The device for ``--device`` (auto: CUDA when available; one GPU per local rank under
    torchrun) and the checked ``--precision``."""
    if device not in DEVICES:
        raise CliError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if precision not in PRECISIONS:
        raise CliError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise CliError("--device cuda: no CUDA device is available (torch "
                       f"{torch.__version__}, built with CUDA {torch.version.cuda})")
    if device == "cpu" or (device == "auto" and not cuda):
        return Placement(torch.device("cpu"), precision)
    if world.local_rank >= torch.cuda.device_count():
        raise CliError(f"--device cuda: local rank {world.local_rank} has no GPU (this node has "
                       f"{torch.cuda.device_count()}); use --nproc-per-node <= the GPU count")
    chosen = torch.device("cuda", world.local_rank)
    torch.cuda.set_device(chosen)
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise CliError(f"--precision bf16: {torch.cuda.get_device_name(chosen)} does not "
                       "support bfloat16; use --precision fp32")
    return Placement(chosen, precision)
