"""The port in a worker process: a time limit on every adapter call, and crash isolation.

``IsolatedPort`` is a ``PortAdapter`` living in the suite's process. It builds the real
adapter with its factory in a **worker process** (a fresh ``python -c`` interpreter in its
own process group, given the suite's ``sys.path``) and forwards every adapter call to it
over two pipes (``multiprocessing.connection.Connection``: arguments and results
pickled): the factory itself, ``load``, ``classify``, ``distill``, ``stages``,
``anytime`` and ``preprocess``. The port's handles stay in the worker; the suite holds
``RemoteHandle`` tokens. Any adapter runs behind it unchanged, a subprocess-protocol adapter for a
non-Python port included (it is an ordinary Python adapter running in the worker, and
its executable is killed with the worker's process group).

* A call that does not return within ``call_timeout`` seconds (``--call-timeout``): the
  worker is killed and ``PortTimeout`` is raised.
* A worker that dies during a call (``os._exit``, ``sys.exit`` from a thread, a
  segmentation fault, the kernel's out-of-memory killer): ``PortCrashed``.

Both are ``PortIncident``s. The plugin turns one into a failure of the running test (with
that test's repro); the next test's first call starts a new worker (the factory runs
again) and a handle loaded before the restart is reloaded from its checkpoint on first
use (state the port kept in it is lost). Within one test (``begin_test`` ..
``end_test``), a call after an incident raises the same incident at once, so a test pays
for a hang once (Hypothesis's shrinking replays do not multiply it). After
``MAX_TIMEOUT_STREAK`` tests in a row each ended on a timeout the port is taken as hung:
every later call raises at once, and a port hanging on every call still ends the run in
bounded time with a complete report.

The worker leaves with ``os._exit`` when the suite closes it (or its pipe closes), so a
non-daemon thread the port started cannot keep the run from ending.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import traceback
import weakref
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from .protocol import AdapterError, Capabilities, load_adapter

DEFAULT_CALL_TIMEOUT = 120.0  # seconds; --call-timeout
MAX_TIMEOUT_STREAK = 3  # tests in a row ending on a timeout before the port counts as hung
CLOSE_GRACE = 5.0  # seconds a closing worker gets before it is killed


# The worker's command: ``python -c WORKER_MAIN <request fd> <reply fd> <spec> <sys.path>``.
WORKER_MAIN = ("import json, sys; sys.path[:] = json.loads(sys.argv[4]); "
               "from multiprocessing.connection import Connection; "
               "from conformance.isolation import serve; "
               "serve(Connection(int(sys.argv[1]), writable=False), "
               "Connection(int(sys.argv[2]), readable=False), sys.argv[3])")


class _Duplex:
    """One object to ``recv`` requests from and ``send`` replies to (two pipes)."""

    def __init__(self, requests: Connection, replies: Connection) -> None:
        self.recv, self.send = requests.recv, replies.send


class PortIncident(RuntimeError):
    """The port's worker process timed out or died during a call (``kind`` says which)."""

    kind = "incident"


class PortTimeout(PortIncident):
    kind = "timeout"


class PortCrashed(PortIncident):
    kind = "crash"


class PortError(RuntimeError):
    """An exception the port raised that cannot be rebuilt in the suite's process (its class
    does not pickle): its type name and message."""


class RemoteHandle:
    """A handle held by the worker: ``key`` is ``[worker generation, id in the worker]``,
    reloaded from ``checkpoint_dir`` when the worker was restarted since."""

    def __init__(self, checkpoint_dir: str, key: list[int]) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.key = key

    def __repr__(self) -> str:
        return f"RemoteHandle({self.checkpoint_dir!r}, generation {self.key[0]}, id {self.key[1]})"


def _portable(value: Any) -> Any:
    """A call result as sent to the suite: array-likes in a mapping become NumPy arrays
    (what the suite's comparisons do with them anyway), so the suite never imports the
    port's framework to unpickle them."""
    if isinstance(value, Mapping):
        return {k: np.asarray(v) if hasattr(v, "__array__") and not isinstance(v, np.ndarray)
                else v for k, v in value.items()}
    return value


# Builtin types an exception keeps when it does not round-trip through pickle (ARG-8's).
KEPT_TYPES = {"TypeError": TypeError, "ValueError": ValueError}


def _portable_error(error: BaseException) -> tuple[str, Any, str]:
    """(``"pickled"``, bytes, traceback) when the exception round-trips through pickle with
    its type and message, else (``"text"``, (builtin base type name, "Type: message"),
    traceback): an exception whose ``__init__`` takes other arguments than its message (a
    ``CheckpointError(problems, source)``) would come back garbled from pickle."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        data = pickle.dumps(error)
        copy = pickle.loads(data)
        if type(copy) is type(error) and str(copy) == str(error):
            return "pickled", data, text
    except Exception:
        pass
    base = next(cls.__name__ for cls in type(error).__mro__ if cls.__module__ == "builtins")
    return "text", (base, f"{type(error).__name__}: {error}"), text


def _rebuild_error(form: str, data: Any, text: str) -> Exception:
    """The port's exception in the suite's process: unpickled, or rebuilt from its text as
    its builtin base type when that is ``TypeError`` or ``ValueError`` (ARG-8 compares the
    type), else a ``PortError``."""
    error: BaseException
    try:
        if form == "pickled":
            error = pickle.loads(data)
        else:
            base, message = data
            error = KEPT_TYPES.get(base, PortError)(message)
    except Exception:
        error = PortError(text.strip().splitlines()[-1])
    if not isinstance(error, Exception):  # SystemExit, a BaseException subclass: not a result
        error = PortError(f"the port raised {type(error).__name__}: {error}")
    if hasattr(error, "add_note"):
        error.add_note(f"traceback in the port's worker process:\n{text.rstrip()}")
    return error


def serve(requests: Connection, replies: Connection, spec: str) -> None:
    """Worker process: build the adapter, then answer requests until told to close."""
    conn = _Duplex(requests, replies)
    try:
        adapter = load_adapter(spec)
    except AdapterError as error:
        conn.send(("error", str(error)))
        os._exit(0)
    conn.send(("ready", adapter.capabilities))
    handles: dict[int, Any] = {}
    ids = itertools.count()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the suite is gone
            break
        if request[0] == "close":
            break
        _, released, method, handle_id, args, kwargs = request
        for key in released:
            handles.pop(key, None)
        try:
            if method == "load":
                handle_id = next(ids)
                handles[handle_id] = adapter.load(*args)
                reply: tuple = ("ok", handle_id)
            elif handle_id is None:  # a call without a model (preprocess)
                reply = ("ok", _portable(getattr(adapter, method)(*args, **kwargs)))
            else:
                reply = ("ok", _portable(getattr(adapter, method)(handles[handle_id], *args,
                                                                  **kwargs)))
        except KeyboardInterrupt:
            break
        except BaseException as error:  # SystemExit too: a call result, not the worker's end
            reply = ("raised", *_portable_error(error))
        try:
            conn.send(reply)
        except Exception as error:  # the result does not pickle
            conn.send(("raised", *_portable_error(PortError(
                f"adapter.{method} returned a {type(reply[1]).__name__} that cannot be sent "
                f"to the suite's process: {type(error).__name__}: {error}"))))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # leftover non-daemon threads of the port must not keep the worker alive


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def describe_call(method: str, args: tuple, kwargs: Mapping[str, Any]) -> str:
    """``classify(images (2, 3, 16, 16) float32, num_tokens=4)``, at most ~160 characters."""
    parts = [f"images {a.shape} {a.dtype}" if isinstance(a, np.ndarray) else repr(a)
             for a in args]
    parts += [f"{k}={v!r}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return f"{method}({text if len(text) <= 150 else text[:147] + '...'})"


class IsolatedPort:
    """The adapter built by ``spec`` (``"package.module:factory"``) in a worker process.

    Raises ``AdapterError`` (one line) when the first worker cannot give an adapter: the
    factory fails, hangs past ``call_timeout`` or kills its process. ``on_incident(error)``
    is called on every ``PortIncident`` before it is raised (the plugin records the
    running test's repro there).
    """

    def __init__(self, spec: str, call_timeout: float = DEFAULT_CALL_TIMEOUT,
                 on_incident: Callable[[PortIncident], None] | None = None) -> None:
        if not call_timeout > 0:
            raise ValueError(f"--call-timeout must be a number of seconds > 0, "
                             f"got {call_timeout!r}")
        self.spec = spec
        self.call_timeout = float(call_timeout)
        self.on_incident = on_incident
        self.generation = 0
        self._process: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._released: list[list[int]] = []
        self._in_test = False
        self._test_incident: PortIncident | None = None
        self._timeout_streak = 0
        self._hung: str | None = None
        try:
            self.capabilities: Capabilities = self._start()
        except PortIncident as error:
            raise AdapterError(f"--impl {spec!r}: building the adapter in its worker process "
                               f"failed: {error}") from None
        atexit.register(self.close)

    # -- worker lifecycle --------------------------------------------------------------
    def _start(self) -> Capabilities:
        to_worker, worker_in = os.pipe()  # (read end for the worker, write end for us)
        worker_out, from_worker = os.pipe()  # (read end for us, write end for the worker)
        command = [sys.executable, "-c", WORKER_MAIN, str(to_worker), str(from_worker),
                   self.spec, json.dumps(sys.path)]
        try:
            process = subprocess.Popen(command, pass_fds=(to_worker, from_worker),
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(to_worker)
            os.close(from_worker)
        self._process = process
        self._send = Connection(worker_in, readable=False)
        self._recv = Connection(worker_out, writable=False)
        self.generation += 1
        reply = self._receive(f"building the adapter ({self.spec.partition(':')[2]}())")
        if reply[0] == "error":
            self._stop()
            raise AdapterError(reply[1])
        return reply[1]

    def _stop(self) -> None:
        """Kill the worker and its process group (anything the port started), forget it."""
        process, send, recv = self._process, self._send, self._recv
        self._process = self._send = self._recv = None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                process.kill()
        if process is not None:
            process.wait()
        for conn in (send, recv):
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Ask the worker to leave; kill it after ``CLOSE_GRACE`` seconds."""
        if self._process is None:
            return
        try:
            self._send.send(("close",))
            self._process.wait(CLOSE_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._stop()

    def _receive(self, what: str) -> tuple:
        """The worker's reply, or a ``PortIncident`` (the worker is then stopped)."""
        if wait([self._recv], self.call_timeout):
            try:
                return self._recv.recv()
            except (EOFError, OSError):  # the worker died: its end of the pipe closed
                pass
        else:
            self._stop()
            return self._incident(PortTimeout(
                f"{what} did not return within {self.call_timeout:g} s "
                "(--call-timeout); the port's worker process was killed"))
        try:
            self._process.wait(CLOSE_GRACE)
        except subprocess.TimeoutExpired:
            pass
        detail = describe_exit(self._process.returncode)
        self._stop()
        return self._incident(PortCrashed(
            f"the port's worker process {detail} during {what}"))

    def _incident(self, error: PortIncident) -> Any:
        if self._in_test and self._test_incident is None:
            self._test_incident = error
        if self.on_incident is not None:
            self.on_incident(error)
        raise error

    # -- tests -------------------------------------------------------------------------
    def begin_test(self) -> None:
        self._in_test, self._test_incident = True, None

    def end_test(self) -> PortIncident | None:
        """The test's first incident (None: none); keeps the streak of timed-out tests."""
        incident, self._in_test, self._test_incident = self._test_incident, False, None
        self._timeout_streak = self._timeout_streak + 1 if isinstance(incident, PortTimeout) \
            else 0
        if self._timeout_streak >= MAX_TIMEOUT_STREAK and self._hung is None:
            self._hung = (f"not run: the port timed out in {MAX_TIMEOUT_STREAK} tests in a row "
                          f"(last: {incident}); every later call fails without running. Fix "
                          "the hang or raise --call-timeout")
        return incident

    # -- calls -------------------------------------------------------------------------
    def _request(self, method: str, handle_id: int | None, args: tuple,
                 kwargs: Mapping[str, Any]) -> Any:
        if self._hung is not None:
            self._incident(PortTimeout(self._hung))
        if self._test_incident is not None:  # this test already had one: fail at once
            raise type(self._test_incident)(str(self._test_incident))
        what = describe_call(method, args, kwargs)
        if self._process is None:
            try:
                self._start()
            except AdapterError as error:
                self._incident(PortCrashed(f"restarting the port's worker process failed: "
                                           f"{error}"))
        released = [index for generation, index in self._released
                    if generation == self.generation]
        self._released.clear()
        try:
            self._send.send(("call", released, method, handle_id, args, dict(kwargs)))
        except OSError:
            pass  # the worker is dead: _receive says how
        reply = self._receive(what)
        if reply[0] == "ok":
            return reply[1]
        raise _rebuild_error(*reply[1:])

    def _resolve(self, handle: Any) -> int:
        """The worker's id of ``handle``, reloading it into a restarted worker."""
        if not isinstance(handle, RemoteHandle):
            raise TypeError(f"expected a handle returned by load(), got {type(handle).__name__}")
        if handle.key[0] != self.generation or self._process is None:
            new_id = self._request("load", None, (handle.checkpoint_dir,), {})
            handle.key[:] = [self.generation, new_id]
        return handle.key[1]

    def load(self, checkpoint_dir: str) -> RemoteHandle:
        key = [0, self._request("load", None, (str(checkpoint_dir),), {})]
        key[0] = self.generation
        handle = RemoteHandle(str(checkpoint_dir), key)
        weakref.finalize(handle, self._released.append, key)
        return handle

    def _method(self, method: str, handle: Any, images: Any, **call_args: Any) -> Any:
        return self._request(method, self._resolve(handle), (images,), call_args)

    def classify(self, handle: Any, images: Any, **call_args: Any) -> dict:
        return self._method("classify", handle, images, **call_args)

    def distill(self, handle: Any, images: Any, **call_args: Any) -> dict:
        return self._method("distill", handle, images, **call_args)

    def stages(self, handle: Any, images: Any, **call_args: Any) -> dict:
        return self._method("stages", handle, images, **call_args)

    def anytime(self, handle: Any, images: Any, **call_args: Any) -> dict:
        return self._method("anytime", handle, images, **call_args)

    def preprocess(self, kind: str, image: Any, size: int) -> Any:
        return self._request("preprocess", None, (kind, image, size), {})
