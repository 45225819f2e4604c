"""``adaperceiver.cli.engine``: the --engine/--precision flags and the runner they make."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch_helpers import checkpoint, images, rel_err

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli.common import CliError
from adaperceiver.cli.engine import add_engine_arguments, make_runner

CONFIG = rn.tiny_config()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_torch_fp32_and_the_runner_records_them():
    args = parse()
    with checkpoint(CONFIG) as (path, _):
        model = ClassificationAdaPerceiver.from_pretrained(path).eval()
    run = make_runner(args, model, depth=2)
    x = torch.from_numpy(images(2, CONFIG)).float()
    with torch.inference_mode():
        expected = model(x, depth=2).logits
    assert (run.engine, run.precision) == ("torch", "fp32")
    assert rel_err(run(x).logits, expected.double().numpy()) == 0.0


def test_bf16_flag_runs_autocast():
    with checkpoint(CONFIG) as (path, _):
        model = ClassificationAdaPerceiver.from_pretrained(path).eval()
    run = make_runner(parse("--precision", "bf16"), model)
    assert (run.engine, run.precision) == ("torch", "bf16")


def test_unsupported_pair_is_one_line_naming_both_flags():
    with pytest.raises(CliError, match=r"--precision int8 is not available with --engine "
                                       r"torch \(allowed: torch: fp32, bf16; .*onnxruntime: "
                                       r"fp32, int8\)"):
        make_runner(parse("--engine", "torch", "--precision", "int8"), None)


def test_unknown_choices_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parse("--engine", "tpu")
    assert "invalid choice: 'tpu'" in capsys.readouterr().err
