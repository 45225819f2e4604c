"""The labelled images ``sweep`` evaluates, as ``torch.utils.data.Dataset`` objects that
decode on demand: an image folder (one sub-folder per class; each file decoded and
preprocessed when a DataLoader worker asks for it, with the same ``decode_image`` and
``preprocess`` as ``classify``) or a bundled array set (``BUNDLED``: a name -> loader of
(images, labels) arrays, held in memory).

A sub-folder is matched to a class by name: one of the checkpoint's label names, or an
ImageNet WordNet id (n01440764 ...) for a 1000-class checkpoint without its own names.
Folders that match neither are an error listing them, unless ``labels="sorted"``: then
the k sorted folder names are classes 0..k-1 (k must equal the number of classes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import cluttered
from ..digits import load_digits
from ..preprocess import CLIP_MEAN, CLIP_STD, preprocess
from .checkpoint import Loaded
from .common import LABEL_MODES, CliError
from .inputs import IMAGE_SUFFIXES, decode_image

# Bundled test sets: name -> () -> (images (n, C, H, W) float32 model input, labels (n,) int).
BUNDLED: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "cluttered": cluttered.test_set,  # the bundled model's 3,590 test canvases
    "digits": lambda: load_digits("test"),  # the 8 x 8 digits model's 359 test digits
}
LISTED = 10  # unmatched folders named in an error message


@dataclass
class Data:
    """What ``sweep`` evaluates: ``dataset`` items are (image (C, S, S) float32, label int,
    error str, "" when the image decoded); ``describe`` goes into results.json."""

    dataset: Dataset
    name: str
    describe: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dataset)


class ArrayImages(Dataset):
    """Images (n, C, H, W) float32 and labels (n,) held in memory (a bundled set)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        return self.images[i], int(self.labels[i]), ""


class ImageFiles(Dataset):
    """Image files decoded and preprocessed one at a time. Paths and labels are NumPy arrays
    (not a list of Python objects, which DataLoader workers would copy page by page)."""

    def __init__(self, paths: list[str], labels: list[int], loaded: Loaded):
        self.paths = np.array(paths)
        self.labels = np.array(labels, dtype=np.int64)
        c = loaded.model.config
        self.channels, self.size = c["in_channels"], c["img_size"]
        self.preprocessing = loaded.preprocessing

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        """A file that cannot be decoded comes back as zeros plus its one-line error, which
        the main process raises (a worker's exception would arrive wrapped in a traceback)."""
        try:
            image = decode_image(Path(str(self.paths[i])), self.channels, "--data")
            return preprocess(image, self.preprocessing, self.size), int(self.labels[i]), ""
        except CliError as err:
            return torch.zeros(self.channels, self.size, self.size), int(self.labels[i]), \
                str(err)


def load_data(data: str, loaded: Loaded, labels: str = "names") -> Data:
    """The bundled set named ``data`` (a key of ``BUNDLED``) or the image folder ``data``."""
    if data in BUNDLED:
        return bundled(data, loaded)
    return image_folder(Path(data), loaded, labels)


def bundled(name: str, loaded: Loaded) -> Data:
    """A bundled set, checked against the checkpoint's input size and classes."""
    x, y = BUNDLED[name]()
    c = loaded.model.config
    classes = int(y.max()) + 1
    if (x.shape[1], x.shape[2], x.shape[3]) != (c["in_channels"], c["img_size"], c["img_size"]) \
            or classes > c["num_classes"]:
        raise CliError(f"--data {name}: the bundled set {name!r} holds {x.shape[1]} x "
                       f"{x.shape[2]} x {x.shape[3]} images of {classes} classes, but --checkpoint "
                       f"{loaded.source} takes {c['in_channels']} x {c['img_size']} x "
                       f"{c['img_size']} images of {c['num_classes']} classes")
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.asarray(y).tobytes())
    return Data(ArrayImages(x, y), name, {
        "kind": "bundled", "name": name, "num_images": len(y),
        "arrays_sha256": digest.hexdigest(),
        "transform": "none (bundled arrays are the model input)"})


def match_classes(names: list[str], loaded: Loaded, labels: str, root: Path) -> list[int]:
    """The class index of each sub-folder name (see the module docstring)."""
    C = len(loaded.labels)
    if labels == "sorted":
        if len(names) != C:
            raise CliError(f"--labels sorted: --data {root} has {len(names)} class sub-folders "
                           f"but the checkpoint has {C} classes")
        return list(range(C))
    index = {name: i for i, name in enumerate(loaded.labels)}
    index.update({wnid: i for i, wnid in enumerate(loaded.wnids or [])})
    unmatched = [name for name in names if name not in index]
    if unmatched:
        kinds = "class names" + (" or ImageNet synset ids" if loaded.wnids else "")
        listed = ", ".join(unmatched[:LISTED]) + (
            f" and {len(unmatched) - LISTED} more" if len(unmatched) > LISTED else "")
        raise CliError(f"--data {root}: {len(unmatched)} of {len(names)} sub-folders match none "
                       f"of the checkpoint's {kinds} (e.g. {', '.join(loaded.labels[:3])}): "
                       f"{listed}; rename them, or pass --labels sorted to take the sorted "
                       f"folders as classes 0..{C - 1}")
    return [index[name] for name in names]


def image_folder(root: Path, loaded: Loaded, labels: str = "names") -> Data:
    """A labelled image folder: every file with an image suffix in each class sub-folder,
    in sorted order (class folder, then file name)."""
    if labels not in LABEL_MODES:
        raise CliError(f"--labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    if not root.is_dir():
        raise CliError(f"--data {root}: not a directory (give a folder with one sub-folder "
                       f"per class, or one of the bundled sets: {', '.join(BUNDLED)})")
    folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not folders:
        raise CliError(f"--data {root}: no class sub-folders")
    classes = match_classes(folders, loaded, labels, root)
    relative, targets = [], []
    for folder, cls in zip(folders, classes, strict=True):
        files = sorted(entry.name for entry in os.scandir(root / folder)
                       if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES)
        relative += [f"{folder}/{name}" for name in files]
        targets += [cls] * len(files)
    if not relative:
        raise CliError(f"--data {root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    digest = hashlib.sha256("\n".join(relative).encode("utf-8")).hexdigest()
    c = loaded.model.config
    return Data(ImageFiles([str(root / r) for r in relative], targets, loaded), root.name, {
        "kind": "folder", "path": str(root.resolve()), "num_images": len(relative),
        "num_class_folders": len(folders), "labels": labels,
        "file_list_sha256": digest,
        "file_list": "sha256 of the sorted 'class_folder/file_name' lines joined by newlines",
        "transform": describe_transform(loaded.preprocessing, c["img_size"])})


def describe_transform(spec: dict[str, Any], img_size: int) -> str:
    """One line naming the preprocessing applied to each decoded image (PRE-1..5)."""
    if spec.get("kind") == "imagenet":
        return (f"imagenet (PRE-1..3): Pillow decode to RGB, resize the shorter side to "
                f"{round(img_size * 256 / 224)} (antialiased bilinear, uint8), center crop "
                f"{img_size}, /255, normalise with CLIP mean {CLIP_MEAN} and std {CLIP_STD}")
    return ("digits (PRE-5): Pillow decode to grey, bright ink, crop to the ink's box, pad to "
            "a centred square, resize to 8 x 8, divide by the maximum")
