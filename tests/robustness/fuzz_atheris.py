"""Coverage-guided fuzz target for both checkpoint loaders (on demand, not in CI).

    python tests/robustness/fuzz_atheris.py -atheris_runs=100000 [corpus_dir]

The input bytes are split at the first NUL: before it the config.json text, after it
the model.safetensors bytes (seeded from a valid tiny checkpoint). The only exception
either loader may raise is its CheckpointError (CKPT-5, CKPT-7, CKPT-8); anything else
is a crash that atheris reports with the input that caused it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import reference_numpy as rn
    from adaperceiver import ClassificationAdaPerceiver
    from adaperceiver.hub import CheckpointError as TorchCheckpointError

WORK = Path(tempfile.mkdtemp(prefix="adaperceiver-atheris-"))


def test_one_input(data: bytes) -> None:
    config, _, weights = data.partition(b"\0")
    (WORK / "config.json").write_bytes(config)
    (WORK / "model.safetensors").write_bytes(weights)
    try:
        rn.load_checkpoint(WORK)
    except rn.CheckpointError:
        pass
    try:
        ClassificationAdaPerceiver.from_pretrained(WORK)
    except TorchCheckpointError:
        pass


def seed_input() -> bytes:
    """config.json, NUL, model.safetensors of a valid tiny checkpoint."""
    seed = Path(tempfile.mkdtemp(prefix="adaperceiver-seed-"))
    config = rn.tiny_config()
    rn.save_checkpoint(seed, config, rn.random_weights(config))
    return (seed / "config.json").read_bytes() + b"\0" + (seed / "model.safetensors").read_bytes()


if __name__ == "__main__":
    corpus = Path(tempfile.mkdtemp(prefix="adaperceiver-corpus-"))
    (corpus / "seed").write_bytes(seed_input())
    args = sys.argv + ([] if any(not a.startswith("-") for a in sys.argv[1:]) else [str(corpus)])
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
