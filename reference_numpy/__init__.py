"""Float64 NumPy oracle of AdaPerceiver: it defines the exact semantics of ``spec/``.

See ``docs/architecture.md`` for the public API and ``spec/CLAUSES.md`` for clause ids.
"""

from .anytime import AnytimeGrid, anytime
from .checkpoint import (
    CheckpointError,
    expected_shapes,
    load_checkpoint,
    random_weights,
    save_checkpoint,
)
from .config import ConfigError, default_config, tiny_config, validate_config
from .model import Trace, classify, distill, trace

__all__ = [
    "AnytimeGrid",
    "CheckpointError",
    "ConfigError",
    "Trace",
    "anytime",
    "classify",
    "default_config",
    "distill",
    "expected_shapes",
    "load_checkpoint",
    "random_weights",
    "save_checkpoint",
    "tiny_config",
    "trace",
    "validate_config",
]
