"""Outputs of ``train`` and ``export-onnx`` are complete or absent: written to a temporary
name and renamed (``adaperceiver.files``), never over an existing output without --force,
never over the checkpoint being read, with the umask's file mode, refused before the work
when the directory is not writable, and a failed or killed write leaves the previous
output intact and nothing half-written that loads."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import reference_numpy as oracle
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.cli import main
from adaperceiver.files import WriteError, atomic_write

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--steps", "1"]


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def _python(code: str, *args: str, cwd: Path) -> subprocess.Popen:
    """``python -c code args`` importing this checkout, offline, its output piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# A child that runs the command line with os.fsync announcing the write on stdout and then
# sleeping: the parent kills it there, in the middle of writing the output.
KILLED_AT_FSYNC = """
import os, sys, time
def stalled(fd):
    print("writing", flush=True)
    time.sleep(600)
os.fsync = stalled
from adaperceiver.cli import main
main(sys.argv[1:])
"""


def _kill_during_write(argv: list[str], cwd: Path) -> None:
    with _python(KILLED_AT_FSYNC, *argv, cwd=cwd) as child:
        for line in child.stdout:
            if line.strip() == "writing":
                break
        else:
            pytest.fail(f"the child ended before writing: {child.stderr.read()}")
        child.send_signal(signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL


def test_kill_during_atomic_write_leaves_the_previous_file(tmp_path):
    """A process killed in the middle of atomic_write (half the bytes written) leaves the
    target as it was; only a hidden temporary file remains."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous complete file")
    with _python("import sys, time\nfrom pathlib import Path\n"
                 "from adaperceiver.files import atomic_write\n"
                 "with atomic_write(Path(sys.argv[1])) as f:\n    f.write(b'x' * 4096)\n"
                 "    f.flush()\n    print('writing', flush=True)\n    time.sleep(600)\n",
                 str(target), cwd=tmp_path) as child:
        assert child.stdout.readline().strip() == "writing", child.stderr.read()
        child.send_signal(signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous complete file"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.bin.")


def test_failed_atomic_write_names_the_file_and_cause(tmp_path, monkeypatch):
    """ENOSPC during the write: a WriteError naming the file and "the disk is full"; the
    previous file is intact and no temporary file is left."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=rf"cannot write {target}: the disk is full"):
        with atomic_write(target) as f:
            f.write(b"new content")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_train_files_get_the_umask_mode(tmp_path, monkeypatch):
    """model.safetensors and the other files have mode 0o666 minus the umask (safetensors'
    own writer gives 0o600), and the directory 0o777 minus the umask."""
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        assert main([*TRAIN, "--out", "ck"]) == 0
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "ck").iterdir()} == {
        name: "0o644" for name in ("config.json", "model.safetensors", "adaperceiver.json",
                                   "README.md")}
    assert oct((tmp_path / "ck").stat().st_mode & 0o777) == "0o755"
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary directory left


@pytest.fixture
def previous(tmp_path) -> Path:
    """An earlier checkpoint in the files train writes (config.json, model.safetensors)."""
    from adaperceiver.train import RECIPE

    config = oracle.default_config(**RECIPE)
    oracle.save_checkpoint(tmp_path / "ck", config, oracle.random_weights(config, seed=3))
    return tmp_path / "ck"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_train_does_not_replace_without_force(previous, capsys):
    before = _snapshot(previous)
    assert _status([*TRAIN, "--out", str(previous)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert _snapshot(previous) == before
    (previous / "notes.txt").write_text("mine")
    assert _status([*TRAIN, "--out", str(previous), "--force"]) == 1
    assert "notes.txt" in capsys.readouterr().err  # a folder with other files: never replaced


def test_train_replaces_with_force(previous, capsys):
    before = _snapshot(previous)
    assert main([*TRAIN, "--out", str(previous), "--force"]) == 0
    after = _snapshot(previous)
    assert set(after) == {"config.json", "model.safetensors", "adaperceiver.json", "README.md"}
    assert after["model.safetensors"] != before["model.safetensors"]
    ClassificationAdaPerceiver.from_pretrained(previous)
    assert sorted(p.name for p in previous.parent.iterdir()) == ["ck"]


def test_train_failing_write_keeps_the_previous_checkpoint(previous, capsys, monkeypatch):
    """A full disk while writing model.safetensors: one line naming the file and the cause,
    the previous checkpoint byte for byte, no temporary directory."""
    before = _snapshot(previous)
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".model.safetensors"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert _status([*TRAIN, "--out", str(previous), "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the progress bar, then the error
    assert err[-1].startswith("adaperceiver train: error: cannot write "), err
    assert "model.safetensors: the disk is full" in err[-1] and "Traceback" not in err
    assert err[-1].endswith(f"{previous} is unchanged")
    assert _snapshot(previous) == before
    assert sorted(p.name for p in previous.parent.iterdir()) == ["ck"]


@pytest.mark.parametrize("flag, value", [("--lr", "1e30"), ("--weight-decay", "1e300")])
def test_diverging_training_stops_and_writes_nothing(tmp_path, capsys, flag, value):
    """A non-finite loss stops training at that step with one line naming the settings;
    exit 1 and no output directory."""
    out = tmp_path / "ck"
    assert _status(["train", "--steps", "5", "--out", str(out),
                    flag, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("adaperceiver train: error: the training loss is ")
    assert "training diverged" in err[-1] and flag in err[-1]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_out_is_refused_before_the_work(tmp_path, capsys):
    """--out in a directory that cannot be written (here /proc, even for root) or that does
    not exist: refused at once, before training or exporting."""
    assert _status([*TRAIN, "--out", "/proc/ck"]) == 1
    assert "cannot write in /proc" in capsys.readouterr().err
    assert _status([*TRAIN, "--out", str(tmp_path / "no" / "ck")]) == 1
    assert "does not exist" in capsys.readouterr().err
    checkpoint = str(oracle_checkpoint(tmp_path))
    assert _status(["export-onnx", "--checkpoint", checkpoint, "--out", "/proc/g.onnx"]) == 1
    assert "cannot write in /proc" in capsys.readouterr().err


def oracle_checkpoint(tmp_path: Path) -> Path:
    config = oracle.tiny_config()
    oracle.save_checkpoint(tmp_path / "tiny", config, oracle.random_weights(config))
    return tmp_path / "tiny"


def test_export_never_overwrites_its_input_or_an_output_without_force(tmp_path, capsys):
    """--out at the checkpoint's own model.safetensors (or a link to it) is refused even
    with --force; an existing --out needs --force; nothing is changed."""
    checkpoint = oracle_checkpoint(tmp_path)
    weights = checkpoint / "model.safetensors"
    before = weights.read_bytes()
    (tmp_path / "link.onnx").symlink_to(weights)
    for out in (weights, tmp_path / "link.onnx"):
        assert _status(["export-onnx", "--checkpoint", str(checkpoint), "--out", str(out),
                        "--force"]) == 1
        assert "refused even with --force" in capsys.readouterr().err
    (tmp_path / "old.onnx").write_bytes(b"old graph")
    assert _status(["export-onnx", "--checkpoint", str(checkpoint), "--out",
                    str(tmp_path / "old.onnx")]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert weights.read_bytes() == before and (tmp_path / "old.onnx").read_bytes() == b"old graph"


def test_export_without_the_onnx_extra_names_the_extra(tmp_path, capsys, monkeypatch):
    """An install without onnxscript: one line saying which extra to install, not
    "internal error (ModuleNotFoundError)"."""
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    checkpoint = oracle_checkpoint(tmp_path)
    assert _status(["export-onnx", "--checkpoint", str(checkpoint), "--out",
                    str(tmp_path / "g.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert "needs the onnx extra (module 'onnxscript' is not installed)" in err
    assert "pip install -e '.[onnx]'" in err and "adaperceiver-reference[onnx]" in err


@pytest.mark.slow
def test_killed_train_and_export_leave_nothing_that_loads(previous, tmp_path):
    """SIGKILL while train --force writes over an earlier checkpoint, and while export-onnx
    writes its graph: the earlier checkpoint still loads unchanged, no graph file exists."""
    before = _snapshot(previous)
    _kill_during_write([*TRAIN, "--out", str(previous), "--force"], tmp_path)
    assert _snapshot(previous) == before
    ClassificationAdaPerceiver.from_pretrained(previous)
    graph = tmp_path / "g.onnx"
    _kill_during_write(["export-onnx", "--checkpoint", str(previous), "--out", str(graph),
                        "--depth", "1"], tmp_path)
    assert not graph.exists()


@pytest.mark.slow
def test_file_size_limit_during_train_is_one_line(previous, tmp_path):
    """A real `ulimit -f` (64 KiB) below model.safetensors' size: exit 1, one line naming the
    file and the file size limit, the earlier checkpoint intact."""
    before = _snapshot(previous)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "adaperceiver", *TRAIN, "--out", str(previous), "--force"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "model.safetensors: the file size limit was reached (ulimit -f)" in last, last
    assert "Traceback" not in result.stderr
    assert _snapshot(previous) == before
