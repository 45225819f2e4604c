"""A fresh-handle repro (STATE-1) as a short runnable Python program against the adapter.

``python_snippet(repro, impl)`` prints the calls of a ``{"check": "fresh-handle", ...}``
repro (``conformance.handles.locate_leak``) as plain adapter calls: load one handle,
replay the (minimised) history, run the call, run it again on a fresh handle and print
the largest difference. Paste it into a file and run it with the port installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .handles import METHODS


def _checkpoint_lines(repro: Mapping[str, Any]) -> list[str]:
    if "scenario" in repro:
        s = repro["scenario"]
        return ["import tempfile",
                "from reference_numpy import default_config",
                "from conformance.cases import write_checkpoint",
                f"config = default_config({s['kind']!r}, **{json.dumps(s['config'])})",
                "directory = str(write_checkpoint(tempfile.mkdtemp(), config, "
                f"{s['weights_seed']}, dtype={s.get('checkpoint_dtype', 'float32')!r}))"]
    return ["from conformance.goldens import GOLDENS_DIR, load_manifest",
            "directory = str(GOLDENS_DIR / load_manifest()['checkpoints']"
            f"[{repro['checkpoint']!r}]['path'])"]


def _call_line(call: Mapping[str, Any], handle: str) -> str:
    method = call.get("method") or "classify"
    return (f"port.{method}({handle}, images_from_ref({json.dumps(call['images'])}), "
            f"**decode({json.dumps(call['call_args'])}))")


def python_snippet(repro: Mapping[str, Any], impl: str) -> str | None:
    """The program, or None for repros of other kinds."""
    if repro.get("check") != "fresh-handle":
        return None
    lines = ["import numpy as np",
             "from conformance.callargs import decode",
             "from conformance.handles import images_from_ref",
             "from conformance.protocol import load_adapter",
             *_checkpoint_lines(repro),
             f"port = load_adapter({impl!r})",
             "handle = port.load(directory)"]
    lines += [_call_line(c, "handle") for c in repro.get("history") or []]
    lines += [f"after = {_call_line(repro, 'handle')}",
              f"fresh = {_call_line(repro, 'port.load(directory)')}",
              "print('max |after - fresh|:', float(np.max(np.abs("
              "np.asarray(after['logits']) - fresh['logits']))))"
              if repro.get("method") in METHODS.values() else
              "print({k: float(np.max(np.abs(np.asarray(after[k]) - fresh[k]))) for k in fresh})"]
    return "\n".join(lines) + "\n"
