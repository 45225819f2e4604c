"""The model a command runs: a checkpoint plus what a user needs around it (class names and
preprocessing), read from the optional ``adaperceiver.json`` beside config.json.

Without that file: a 1000-class checkpoint gets the ImageNet-1K class names and every
checkpoint the published ImageNet evaluation transform (PRE-1..3); other classes are named
by their index. The default checkpoint is the bundled digits model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digits import BUNDLED_MODEL, DATA_DIR
from ..hub import CONFIG_NAME, read_config, read_json_object, resolve_files
from ..model import ClassificationAdaPerceiver
from ..preprocess import KINDS
from .common import CliError

METADATA_NAME = "adaperceiver.json"
IMAGENET_CLASSES = DATA_DIR / "imagenet_classes.tsv"


@dataclass
class Loaded:
    """A classifier ready for a command: model (eval mode), where it came from, one name per
    class, the ImageNet WordNet ids when it is a 1000-class model, and its preprocessing."""

    model: ClassificationAdaPerceiver
    source: str
    labels: list[str]
    wnids: list[str] | None
    preprocessing: dict[str, Any]
    metadata: dict[str, Any]


def imagenet_classes() -> tuple[list[str], list[str]]:
    """(WordNet ids, short names) of the 1000 ImageNet-1K classes in index order."""
    rows = [line.split("\t") for line in IMAGENET_CLASSES.read_text("utf-8").splitlines()]
    return [wnid for wnid, _ in rows], [lemmas.split(",")[0] for _, lemmas in rows]


def load(checkpoint: str | None) -> Loaded:
    """The checkpoint directory or hub id ``checkpoint`` (None: the bundled digits model)."""
    source = str(BUNDLED_MODEL if checkpoint is None else checkpoint)
    config_path, _ = resolve_files(source)
    config = read_config(config_path)
    if "output_feat_dim" in config:
        raise CliError(f"--checkpoint {source}: this is a DistillAdaPerceiver checkpoint "
                       f"({CONFIG_NAME} has output_feat_dim), a feature backbone; the commands "
                       "need a ClassificationAdaPerceiver checkpoint such as "
                       "pjajal/adaperceiver-v1-in1k-ft")
    model = ClassificationAdaPerceiver.from_pretrained(source)
    metadata = _read_metadata(config_path.parent / METADATA_NAME)
    C = model.config["num_classes"]
    wnids = None
    if "labels" in metadata:
        labels = metadata["labels"]
        if not (isinstance(labels, list) and len(labels) == C
                and all(isinstance(name, str) for name in labels)):
            raise CliError(f"{config_path.parent / METADATA_NAME}: labels must be a list of "
                           f"{C} strings (num_classes), got {str(labels)[:80]}")
    elif C == 1000:
        wnids, labels = imagenet_classes()
    else:
        labels = [f"class {i}" for i in range(C)]
    preprocessing = metadata.get("preprocessing", {"kind": "imagenet"})
    if not isinstance(preprocessing, dict) or preprocessing.get("kind") not in KINDS:
        raise CliError(f"{config_path.parent / METADATA_NAME}: preprocessing must be an "
                       f"object with kind one of {', '.join(KINDS)}, got {preprocessing!r}")
    return Loaded(model, source, labels, wnids, preprocessing, metadata)


def _read_metadata(path: Path) -> dict[str, Any]:
    """adaperceiver.json as a dict, {} when there is none; read with config.json's guards
    (``hub.read_json_object``, CKPT-8)."""
    return read_json_object(path) if os.path.lexists(path) else {}
