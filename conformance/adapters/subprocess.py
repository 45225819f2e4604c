"""Adapter for a port that is an executable: the line-oriented JSON protocol over stdin/stdout.

    export ADAPERCEIVER_PORT_COMMAND="./my-port --serve"
    conformance --impl conformance.adapters.subprocess:factory
    conformance --impl conformance.adapters.subprocess:oracle   # the worked example

The adapter starts the command once, sends one JSON request per line on its stdin and
reads one JSON response per line from its stdout (the executable's stderr is passed
through). Arrays travel as ``.npy`` files (little-endian, C order, no pickle) in a
temporary directory the adapter owns. The protocol is described in
``conformance/README.md`` ("Ports behind a process: the subprocess protocol"); the
worked example is ``conformance/examples/oracle_server.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np

from ..export import save_npy
from ..protocol import Capabilities

PROTOCOL = "adaperceiver-port-protocol"
PROTOCOL_VERSION = 1
COMMAND_VARIABLE = "ADAPERCEIVER_PORT_COMMAND"
ERRORS = {"ValueError": ValueError, "TypeError": TypeError}  # other types: RuntimeError


class PortProcessError(RuntimeError):
    """The executable broke the protocol or exited; the message says how."""


def _plain(value: Any) -> Any:
    """Call arguments as JSON values: NumPy scalars to Python numbers, tuples to lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SubprocessAdapter:
    """A port running as a separate process, spoken to by ``PROTOCOL`` version 1."""

    def __init__(self, command: list[str]) -> None:
        self._command = command
        self._tmp = tempfile.TemporaryDirectory(prefix="adaperceiver-port-")
        self._ids = count()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, encoding="utf-8", bufsize=1)
        try:
            hello = self._request({"op": "hello", "protocol": PROTOCOL,
                                   "protocol_version": PROTOCOL_VERSION})
            self.capabilities = Capabilities(**hello["capabilities"])
        except BaseException:
            self._shutdown()
            raise

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request line; the parsed response line, or the port's error raised."""
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except (BrokenPipeError, OSError) as error:
            line, broken = "", error
        else:
            broken = None
        if not line:
            try:
                how = f"ended (exit status {self._process.wait(timeout=5)})"
            except subprocess.TimeoutExpired:
                how = "closed its stdout"
            raise PortProcessError(f"port command {shlex.join(self._command)!r} {how} during "
                                   f"op {request['op']!r}" + (f": {broken}" if broken else "")
                                   ) from broken
        try:
            response = json.loads(line)
        except json.JSONDecodeError as error:
            raise PortProcessError(f"port answered op {request['op']!r} with a line that is "
                                   f"not JSON: {line[:200]!r}") from error
        if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
            raise PortProcessError(f"port answered op {request['op']!r} without a boolean "
                                   f"'ok': {line[:200]!r}")
        if not response["ok"]:
            raise ERRORS.get(response.get("type"), RuntimeError)(str(response.get("error")))
        return response

    def load(self, checkpoint_dir: str) -> str:
        return self._request({"op": "load", "checkpoint": str(checkpoint_dir)})["handle"]

    def _call(self, op: str, handle: str, images: np.ndarray, call_args: dict) -> dict:
        """One model call: images to an .npy file, outputs read back from the named files."""
        call = Path(self._tmp.name) / f"call-{next(self._ids)}"
        call.mkdir()
        save_npy(call / "images.npy", images)
        response = self._request({"op": op, "handle": handle, "images": str(call / "images.npy"),
                                   "args": {k: _plain(v) for k, v in call_args.items()},
                                   "out_dir": str(call)})
        outputs = {name: np.load(path, allow_pickle=False)
                   for name, path in response["outputs"].items()}
        for path in call.iterdir():
            path.unlink()
        call.rmdir()
        return outputs

    def classify(self, handle: str, images: np.ndarray, **call_args: Any) -> dict:
        return self._call("classify", handle, images, call_args)

    def distill(self, handle: str, images: np.ndarray, **call_args: Any) -> dict:
        return self._call("distill", handle, images, call_args)

    def stages(self, handle: str, images: np.ndarray, **call_args: Any) -> dict:
        return self._call("stages", handle, images, call_args)

    def anytime(self, handle: str, images: np.ndarray, **call_args: Any) -> dict:
        return self._call("anytime", handle, images, call_args)

    def preprocess(self, kind: str, image: np.ndarray, size: int) -> np.ndarray:
        """The port's preprocessing (when declared): the uint8 image as a file, ``x`` back."""
        call = Path(self._tmp.name) / f"call-{next(self._ids)}"
        call.mkdir()
        save_npy(call / "image.npy", image)
        response = self._request({"op": "preprocess", "kind": kind, "size": int(size),
                                  "image": str(call / "image.npy"), "out_dir": str(call)})
        x = np.load(response["outputs"]["x"], allow_pickle=False)
        for path in call.iterdir():
            path.unlink()
        call.rmdir()
        return x

    def close(self) -> None:
        """Ask the port to exit (``{"op": "exit"}``), then stop it and remove the files."""
        if self._process.poll() is None:
            try:
                self._process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self._process.stdin.flush()
            except OSError:
                pass
        self._shutdown()

    def _shutdown(self, grace_s: float = 10.0) -> None:
        """Close the pipes, wait ``grace_s`` for the process to end (then kill it), clean up."""
        for pipe in (self._process.stdin, self._process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._tmp.cleanup()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None and self._process.poll() is None:
            self._process.kill()


def factory() -> SubprocessAdapter:
    """The executable named by ``ADAPERCEIVER_PORT_COMMAND`` (split as a shell would)."""
    command = shlex.split(os.environ.get(COMMAND_VARIABLE, ""))
    if not command:
        raise ValueError(f"{COMMAND_VARIABLE} must name the port's executable and its "
                         "arguments, e.g. './my-port --serve'; it is unset or empty")
    return SubprocessAdapter(command)


def oracle() -> SubprocessAdapter:
    """The worked example: the NumPy oracle behind the protocol, in its own process."""
    return SubprocessAdapter([sys.executable, "-m", "conformance.examples.oracle_server"])
