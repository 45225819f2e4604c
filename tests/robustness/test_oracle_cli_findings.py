"""Regression tests for F9 and N4 on ``python -m reference_numpy``: bad flags are named in
the error, OSError and MemoryError never end in a traceback (exit status 1 or argparse's 2)."""

from __future__ import annotations

import pytest
from robust_helpers import make_checkpoint

from reference_numpy.__main__ import main


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """(exit status, stderr) of one in-process CLI run."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse rejects a flag with status 2
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("flag, value, says", [
    ("--batch", "10000000", "--batch must be an int in 1..4096, got 10000000"),
    ("--batch", "-1", "--batch must be an int in 1..4096, got -1"),
    ("--image-seed", "-1", "--image-seed must be an int >= 0, got -1"),
    ("--depth-tau", "half", "--depth-tau must be a real number, got 'half'"),
    ("--num-tokens", "4.5", "--num-tokens must be an int, got '4.5'"),
])
def test_f9_n4_bad_flags_are_named(capsys, tmp_path, flag, value, says):
    """F9, N4: --batch 10000000 allocated 57 GiB (traceback); negative values gave messages
    without the flag name."""
    status, err = run_cli(capsys, "classify", "--checkpoint", str(tmp_path), flag, value)
    assert status == 2 and says in err and "Traceback" not in err


def test_f9_huge_num_tokens_is_a_clean_error(capsys, tmp_path):
    """F9, LIM-2: --num-tokens 10**30 reaches the model's ValueError, not a traceback."""
    ck = make_checkpoint(tmp_path / "ck")
    status, err = run_cli(capsys, "classify", "--checkpoint", str(ck),
                          "--num-tokens", "1" + "0" * 30)
    assert status == 1 and err.startswith("error: num_tokens must be an int in 1..65536")


def test_f9_demo_out_existing_file(capsys, tmp_path):
    """F9: demo --out EXISTING_FILE ended in a FileExistsError traceback."""
    existing = tmp_path / "file"
    existing.write_text("x")
    status, err = run_cli(capsys, "demo", "--out", str(existing))
    assert status == 1 and "is not a directory" in err


def test_f9_os_error_is_reported(capsys, tmp_path):
    """F9: an OSError while writing the demo checkpoint (a directory below a regular file,
    NotADirectoryError even for root) is one line, exit status 1."""
    existing = tmp_path / "file"
    existing.write_text("x")
    status, err = run_cli(capsys, "demo", "--out", str(existing / "sub"))
    assert status == 1 and err.startswith("error: ") and "Traceback" not in err
