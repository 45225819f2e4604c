"""``adaperceiver export-onnx``: one static configuration of a checkpoint as an ONNX graph
(``adaperceiver.onnx.export``).

Before any work: the ``onnx`` extra must be installed, ``--out`` must not be a file of the
checkpoint being read (refused even with ``--force``), an existing ``--out`` is replaced
only with ``--force``, and its directory must be writable. The graph is written
atomically (``files.atomic_write``): an interrupted export leaves no partial file.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Any

from ..files import check_writable
from ..onnx.quantize import QUANTIZE
from . import COMMANDS
from .common import CliError, check_budget, integer, num_tokens

EXTRA_MODULES = ("onnx", "onnxscript")  # what torch.onnx.export(dynamo=True) imports
INSTALL_EXTRA = ("pip install -e '.[onnx]' in a checkout of the repository, or "
                 "pip install 'adaperceiver-reference[onnx]'")


def require_onnx() -> None:
    """A ``CliError`` naming the extra to install when its modules are missing."""
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise CliError(f"export-onnx needs the onnx extra (module {name!r} is not "
                           f"installed): {INSTALL_EXTRA}") from None


def check_out(out: Path, checkpoint_files: list[Path], force: bool) -> None:
    """--out is not an input file, exists only with --force, and its directory is writable."""
    if out.is_dir():
        raise CliError(f"--out {out}: is a directory; give the .onnx file to write")
    if out.exists():
        for source in checkpoint_files:
            if source.exists() and os.path.samefile(out, source):
                raise CliError(f"--out {out} is the file {source.name} of the checkpoint being "
                               "exported; write the graph elsewhere (refused even with "
                               "--force)")
        if not force:
            raise CliError(f"--out {out} already exists; pass --force to replace it")
    check_writable(out.parent, f"--out {out}")


def run(args: argparse.Namespace) -> int:
    """Run ``export-onnx``; prints the configuration, export time and file size."""
    from ..hub import resolve_files
    from ..onnx.export import export_onnx, load_model

    out = Path(args.out)
    config_path, weights_path = resolve_files(args.checkpoint)
    check_out(out, [config_path, weights_path, *config_path.parent.iterdir()], args.force)
    require_onnx()
    model = load_model(args.checkpoint)
    check_budget(args.depth, args.mat_dim, model.config)
    result = export_onnx(model, out, num_tokens=args.num_tokens, mat_dim=args.mat_dim,
                         depth=args.depth, image_size=args.image_size, anytime=args.anytime,
                         quantize=args.quantize)
    print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB) in {result.seconds:.1f} s: "
          f"{result.config.to_json()}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``export-onnx`` subcommand."""
    parser = subparsers.add_parser(
        "export-onnx", help=COMMANDS["export-onnx"][1],
        description="Export a checkpoint at one static configuration (tokens, width, depth, "
                    "image size; dynamic batch) to ONNX with torch.onnx.export(dynamo=True). "
                    f"Needs the onnx extra: {INSTALL_EXTRA}.")
    parser.add_argument("--checkpoint", required=True, metavar="DIR_OR_HUB_ID",
                        help="checkpoint directory (config.json + model.safetensors) or hub id")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the .onnx file to write (its directory must exist)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out, never a file of the checkpoint "
                        "(default: refuse)")
    parser.add_argument("--num-tokens", type=num_tokens, metavar="N",
                        help="latent tokens N, 1..65536 (default: the checkpoint's maximum)")
    parser.add_argument("--mat-dim", type=integer, metavar="M",
                        help="Matryoshka FFN width m, 1..embed_dim (default: full width)")
    parser.add_argument("--depth", type=integer, metavar="D",
                        help="blocks to run, 1..the checkpoint's depth (default: all)")
    parser.add_argument("--image-size", type=integer, nargs=2, metavar=("H", "W"),
                        help="image height and width (default: the trained size)")
    parser.add_argument("--anytime", action="store_true",
                        help="also output the anytime grid 'grid' (B, depth, G, C)")
    parser.add_argument("--quantize", choices=QUANTIZE,
                        help="int8: quantize the weight matmuls (ONNX Runtime dynamic "
                        "quantization; default: float32)")
    parser.set_defaults(func=run)
