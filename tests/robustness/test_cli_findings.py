"""Second hostile round on the commands (issues 22 and 24): the checkpoint's
adaperceiver.json read with config.json's guards (CKPT-8), and ``train --help``."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from adaperceiver.cli import main
from adaperceiver.digits import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[2]


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture
def digits_copy(tmp_path) -> Path:
    """The bundled checkpoint's config and weights, without its adaperceiver.json."""
    copy = tmp_path / "ck"
    copy.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(BUNDLED_MODEL / name, copy / name)
    return copy


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _large(path: Path) -> None:
    path.write_text('{"labels": [' + ", ".join(['"x"'] * 300_000) + "]}")


def _repeated(path: Path) -> None:
    path.write_text('{"preprocessing": {"kind": "digits"}, "preprocessing": {"kind": "x"}}')


def _labels(path: Path) -> None:
    path.write_text('{"labels": ["zero", "one"]}')


def _kind(path: Path) -> None:
    path.write_text('{"preprocessing": {"kind": "sharpen"}}')


@pytest.mark.parametrize("make, phrase", [
    (_fifo, "adaperceiver.json is not a regular file"),
    (_dev_zero, "adaperceiver.json is not a regular file"),
    (_large, "adaperceiver.json is larger than 1048576 bytes"),
    (_repeated, "key 'preprocessing' appears more than once"),
    (_labels, "labels must be a list of 10 strings"),
    (_kind, "preprocessing must be an object with kind one of imagenet, digits"),
], ids=["fifo", "dev-zero", "over-1-MiB", "repeated-key", "labels", "kind"])
def test_metadata_has_the_guards_of_config_json(digits_copy, capsys, make, phrase):
    """CKPT-8 for adaperceiver.json: a FIFO or a link to /dev/zero is reported, never
    waited on or read to exhaustion; the size cap, repeated keys and the known fields are
    checked; each is one line, exit 1."""
    make(digits_copy / "adaperceiver.json")
    npy = ROOT / "tests" / "robustness" / "missing.npy"  # never reached: the metadata fails first
    assert _status(["classify", "--checkpoint", str(digits_copy), str(npy)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and phrase in err, err


def test_train_help_gives_every_default_and_cites_no_missing_file(capsys):
    """train --help: every flag has help text with its default, and every file it names
    (*.md, *.py, *.yaml) exists in the repository."""
    assert _status(["train", "--help"]) == 0
    text = capsys.readouterr().out
    flags = re.findall(r"^  (--[a-z-]+)", text, flags=re.M)
    assert {"--out", "--steps", "--lr", "--weight-decay", "--threads", "--force"} <= set(flags)
    options = text.split("options:")[1]
    entries = re.split(r"\n  (?=-)", options)[1:]  # one entry per flag, help included
    for entry in entries:
        if entry.startswith(("-h", "--out")):  # help and the required --out have no default
            continue
        assert "(default: " in " ".join(entry.split()), entry
    for cited in re.findall(r"[\w./-]+\.(?:md|py|yaml)\b", text):
        assert any((base / cited).exists() for base in (ROOT, ROOT / "spec", ROOT / "docs")), cited
