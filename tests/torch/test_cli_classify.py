"""``adaperceiver classify`` in-process: a clean stderr on every image mode, batches of
``--batch-size`` bounded by the memory available now, the cost estimate of a call far above
the trained budget, progress, the budget flags' messages against the checkpoint, and
``--threads`` bounded by the machine (all commands)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli import classify, common, main
from adaperceiver.digits import DIGITS_MODEL, load_digits
from adaperceiver.flops import flops


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        return exit_.code


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory):
    """20 test digits as a preprocessed .npy file."""
    path = tmp_path_factory.mktemp("npy") / "x.npy"
    np.save(path, load_digits("test")[0][:20])
    return path


def test_stderr_is_clean_for_every_image_mode(tmp_path, capsys):
    """Grey, RGB, RGBA, LA, palette and 16-bit images classify with nothing on stderr (no
    torch "NumPy array is not writable" warning; pytest turns warnings into errors here)."""
    counts = np.kron(load_digits("test")[0][0, 0], np.ones((8, 8)))
    grey = (255 - 255 * counts).astype(np.uint8)
    images = {"L": Image.fromarray(grey), "RGB": Image.fromarray(grey).convert("RGB"),
              "RGBA": Image.fromarray(grey).convert("RGBA"),
              "LA": Image.fromarray(grey).convert("LA"), "P": Image.fromarray(grey).convert("P"),
              "I;16": Image.fromarray(grey.astype(np.uint16))}
    paths = []
    for mode, image in images.items():
        paths.append(str(tmp_path / f"{mode.replace(';', '')}.png"))
        image.save(paths[-1])
    assert main(["classify", *paths]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) == 2 + len(paths)  # what files become, the header


def test_batches_give_the_results_of_one_pass(digits_npy, capsys, monkeypatch):
    """--batch-size 7 runs 20 images as 7 + 7 + 6 and prints exactly the lines of one
    forward over all 20 at a fixed budget."""
    sizes = []
    forward = ClassificationAdaPerceiver.forward

    def recording(self, x, **kwargs):
        sizes.append(x.shape[0])
        return forward(self, x, **kwargs)

    monkeypatch.setattr(ClassificationAdaPerceiver, "forward", recording)
    assert main(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy),
                 "--num-tokens", "8", "--batch-size", "7"]) == 0
    batched = capsys.readouterr()
    assert sizes == [7, 7, 6] and batched.err == ""
    model = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL)
    x = torch.from_numpy(np.load(digits_npy))
    with torch.inference_mode():
        logits = forward(model, x, num_tokens=8).logits[:, 0]
    top1 = [int(line.split()[3]) for line in batched.out.splitlines()[1:]]
    assert top1 == logits.argmax(-1).tolist()


def test_batches_shrink_to_the_available_memory(digits_npy, capsys, monkeypatch):
    """The batch is bounded by half of MemAvailable (LIM-3's estimate per image), with a
    note on stderr; an image that alone exceeds it is refused before any work."""
    from adaperceiver.limits import estimate_bytes

    config = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL).config
    per_image = estimate_bytes(config, (1, 1, 8, 8), 16, 4) + 4 * 64
    monkeypatch.setattr(classify, "available_memory", lambda: 2 * 5 * per_image + 1)
    assert main(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("classify: batches of 5 images (20 would need more")
    assert len(captured.out.splitlines()) == 21
    monkeypatch.setattr(classify, "available_memory", lambda: per_image)
    assert _status(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy)]) == 1
    err = capsys.readouterr().err
    assert "needs an estimated" in err and "memory available now" in err


def test_available_memory_is_memavailable():
    """The memory a batch is compared with is /proc/meminfo's MemAvailable, not the
    physical memory."""
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    available = int(fields["MemAvailable"].split()[0]) * 1024
    assert abs(common.available_memory() - available) < 256 * 2**20  # it moves meanwhile


def test_a_call_far_above_the_trained_budget_prints_its_estimate(digits_npy, capsys):
    """num_tokens 512 on the 16-latent digits model: the estimate (analytic GFLOPs per
    image, the ratio to the trained budget, a time at a measured rate) comes first."""
    config = ClassificationAdaPerceiver.from_pretrained(DIGITS_MODEL).config
    per_image, trained = flops(config, num_tokens=512) / 1e9, flops(config) / 1e9
    assert per_image > classify.FAR_ABOVE * trained
    assert main(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy),
                 "--num-tokens", "512"]) == 0
    err = capsys.readouterr().err
    match = re.match(r"classify: 20 image\(s\) at an estimated (\S+) GFLOPs each, (\S+)x the "
                     r"checkpoint's trained budget \((\S+) GFLOPs\); .* roughly \d+ (s|min|h) at "
                     r"the \S+ GFLOP/s measured here", err)
    assert match, err
    assert float(match[1]) == pytest.approx(per_image, rel=1e-3)
    assert float(match[3]) == pytest.approx(trained, rel=1e-2)
    assert main(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy),
                 "--num-tokens", "16"]) == 0
    assert capsys.readouterr().err == ""  # the trained budget is not announced


def test_progress_bar_over_batches_on_a_terminal(digits_npy, capsys, monkeypatch):
    """On a terminal, a tqdm bar counts the batches on stderr."""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy),
                 "--batch-size", "5"]) == 0
    assert "4/4" in terminal.getvalue() and "classify" in terminal.getvalue()


@pytest.mark.parametrize("flag, value, key", [("--depth", "0", "depth 4"),
                                              ("--depth", "7", "depth 4"),
                                              ("--mat-dim", "0", "embed_dim 64"),
                                              ("--mat-dim", "65", "embed_dim 64")])
def test_budget_flags_name_the_checkpoint_range(digits_npy, capsys, flag, value, key):
    """Too small and too large say the same: the checkpoint's range and config value."""
    assert _status(["classify", "--checkpoint", str(DIGITS_MODEL), str(digits_npy),
                    flag, value]) == 1
    high = key.split()[1]
    assert capsys.readouterr().err == (f"adaperceiver classify: error: {flag} must be in "
                                       f"1..{high} for this checkpoint (config {key}), "
                                       f"got {value}\n")


@pytest.mark.parametrize("argv", [["classify", "x.npy"], ["train", "--out", "t"]])
def test_threads_are_bounded_by_the_machine(capsys, argv):
    """--threads above the CPUs this process may use is a usage error (no OpenMP abort)."""
    cpus = common.usable_cpus()
    assert _status([*argv, "--threads", str(cpus + 1)]) == 2
    err = capsys.readouterr().err
    assert f"must be an integer in 1..{cpus}, got {cpus + 1}" in err
    assert common.threads(str(cpus)) == cpus


def test_help_and_argument_errors_do_not_import_torch():
    """``adaperceiver --help``, a bare command, an unknown command, and the help and
    argument errors of classify, export-onnx, demo and sweep are answered without importing
    torch (a command module loads only when its command is named, and torch when it runs)."""
    import subprocess
    import sys

    code = ("import sys\nfrom adaperceiver.cli import main\n"
            "for argv in (['--help'], [], ['nonsense'], ['classify', '--help'],\n"
            "             ['classify', 'x.npy', '--threads', '0'], ['export-onnx', '--help'],\n"
            "             ['export-onnx', '--depth', 'x'], ['demo', '--help'],\n"
            "             ['sweep', '--help'], ['sweep', '--batch-size', '0']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)\n")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.stdout.splitlines()[-1] == "False", result.stderr
    assert "export-onnx" in result.stdout and "classify" in result.stdout
    assert "--save-logits" in result.stdout  # sweep's own help was printed
