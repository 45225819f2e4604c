"""The ONNX modules moved into ``adaperceiver.onnx``; the old paths users could import
(``adaperceiver.export_onnx``, ``adaperceiver.onnx_session``) work for one release and warn."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from adaperceiver.onnx import export, session


@pytest.mark.parametrize(("old", "names"), [
    ("adaperceiver.export_onnx", ("export_onnx", "swap_weights", "GraphConfig")),
    ("adaperceiver.onnx_session", ("OnnxGraph", "check_images")),
])
def test_old_import_paths_warn_and_give_the_moved_objects(old, names):
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match="moved to adaperceiver.onnx"):
        module = importlib.import_module(old)
    for name in names:
        moved = getattr(export if old.endswith("export_onnx") else session, name)
        assert getattr(module, name) is moved


def test_old_module_command_still_runs():
    done = subprocess.run([sys.executable, "-m", "adaperceiver.export_onnx", "export-onnx",
                           "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--num-tokens" in done.stdout
    assert "moved to adaperceiver.onnx.export" in done.stderr
