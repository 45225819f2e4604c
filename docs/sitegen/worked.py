"""Worked examples tied to golden cases, in the manner of the ONNX operator pages: for a
case, its clauses, model, call arguments, input and expected output excerpts and the
tolerance, all read at build time from the goldens archive the site offers for download
(``sitegen.archive``), so the page shows exactly the numbers of the files.

A page writes ``<!-- golden-example: CASE [STAGE ...] -->``; ``fill`` replaces it by the
case's section, with excerpts of the named oracle stages (``read``, ``write``, ...) too.
tests/docs/test_worked_examples.py checks the numbers against the committed goldens.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np

from . import archive as goldens_archive

EXCERPT = 4  # values shown of an array's last axis
CONFIG_KEYS = ("embed_dim", "num_heads", "depth", "max_latent_tokens", "ffn_ratio",
               "attn_layer", "block_mask", "mask_token_grans", "img_size", "patch_size",
               "in_channels", "num_classes")


def excerpt_index(shape: tuple[int, ...]) -> tuple:
    """Index of the excerpt shown: the first EXCERPT values of the first row."""
    return (0,) * (len(shape) - 1) + (slice(0, EXCERPT),) if shape else ()


def index_text(shape: tuple[int, ...]) -> str:
    """``[0, 0, :4]`` for a (3, 1, 10) array, ``[:4]`` for a vector."""
    return "[" + ", ".join(["0"] * (len(shape) - 1) + [f":{EXCERPT}"]) + "]"


def number(value) -> str:
    """A value as the page prints it: 10 significant digits, or the integer."""
    return str(int(value)) if np.issubdtype(type(value), np.integer) else f"{value:.10g}"


def excerpt(name: str, array: np.ndarray) -> str:
    """``name[0, 0, :4] = [v0, v1, ...]``, or the whole array when it has EXCERPT values
    or fewer."""
    if array.size <= EXCERPT:
        return f"{name} = [{', '.join(number(v) for v in array.ravel())}]"
    values = array[excerpt_index(array.shape)].ravel()
    return f"{name}{index_text(array.shape)} = [{', '.join(number(v) for v in values)}]"


def load(archive, entry: dict) -> np.ndarray:
    """The ``.npy`` file of a manifest entry, read from the archive."""
    return np.load(io.BytesIO(archive.member(entry["file"])), allow_pickle=False)


def file_cell(entry: dict, sha: dict) -> str:
    """``cases/x/logits.npy``: float64 (`<f8`) (3, 1, 10), sha256 ``1817a6cc…``."""
    return (f"`{entry['file']}`: {np.dtype(entry['dtype']).name} (`{entry['dtype']}`) "
            f"{tuple(entry['shape'])}, sha256 `{sha[entry['file']][:16]}…`")


def call_text(case: dict) -> str:
    """``ref.classify(weights, config, images, num_tokens=6)``."""
    args = "".join(f", {key}={value!r}" for key, value in case["call_args"].items())
    return f"ref.{case['method']}(weights, config, images{args})"


def case_markdown(case_id: str, stages: list[str]) -> str:
    """The section of golden case ``case_id``."""
    archive = goldens_archive.build()
    manifest = goldens_archive.manifest_of(archive)
    cases = {case["id"]: case for case in manifest["cases"]}
    if case_id not in cases:
        raise ValueError(f"golden-example: {case_id!r} is not a golden case id")
    case = cases[case_id]
    config = json.loads(archive.member(f"{case['checkpoint_dir']}/config.json"))
    shown = {key: config[key] for key in CONFIG_KEYS if key in config}
    sha = manifest["sha256"]
    rows = [
        f"| clauses | {', '.join(case['clauses'])} |",
        f"| checkpoint | `{case['checkpoint_dir']}/` ({case['checkpoint']}): "
        f"`{json.dumps(shown)}` |",
        f"| call | `{call_text(case)}` |",
        *[f"| input `{name}` | {file_cell(entry, sha)} |"
          for name, entry in case["inputs"].items()],
        *[f"| expected `{name}` | {file_cell(entry, sha)} |"
          for name, entry in case["outputs"].items()],
        f"| tolerance | TOL-1 `rtol` {case['rtol']['float32']:g} (float32 port), "
        f"{case['rtol']['float64']:g} (float64 port); integer outputs equal |",
    ]
    if case.get("exit_margin") is not None:
        rows.append(f"| exit margin | {case['exit_margin']:g}: the distance from depth_tau to the "
                    "nearest deciding confidence (GOLD-1), so exit depths must match exactly |")
    lines = [*(excerpt(name, load(archive, entry)) for name, entry in case["inputs"].items()),
             *(excerpt(name, load(archive, entry)) for name, entry in case["outputs"].items()),
             *(excerpt(f"stages/{stage}", load(archive, case["stages"][stage]))
               for stage in stages)]
    return "\n".join([f"**Golden case `{case_id}`**", "", "| field | value |", "|---|---|",
                      *rows, "",
                      "```text", *lines, "```", ""])


_MARKER = re.compile(r"^<!--\s*golden-example:\s*(\S+)((?:\s+[a-z_0-9]+)*)\s*-->\s*$",
                     re.MULTILINE)


def fill(markdown: str) -> str:
    """Replace every ``golden-example`` marker by its case's section."""
    return _MARKER.sub(lambda m: case_markdown(m.group(1), m.group(2).split()), markdown)
