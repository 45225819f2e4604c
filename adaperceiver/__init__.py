"""Fast PyTorch implementation of AdaPerceiver, drop-in for the published checkpoints.

>>> from adaperceiver import ClassificationAdaPerceiver
>>> model = ClassificationAdaPerceiver.from_pretrained("path/or/hub-id")  # doctest: +SKIP
>>> out = model(x, num_tokens=128, mat_dim=416, depth=12)                 # doctest: +SKIP
"""

from .anytime import AnytimeOutput, early_exit
from .config import ConfigError
from .flops import flops
from .hub import CheckpointError
from .model import AdaPerceiverOutput, ClassificationAdaPerceiver, DistillAdaPerceiver

__all__ = [
    "AdaPerceiverOutput",
    "AnytimeOutput",
    "CheckpointError",
    "ClassificationAdaPerceiver",
    "ConfigError",
    "DistillAdaPerceiver",
    "early_exit",
    "flops",
]
