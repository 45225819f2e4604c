"""Hostile ports (issue 24): each wraps the oracle adapter and exits, crashes, hangs or keeps a
thread. The suite must turn each into failures of the tests that met it (or one usage-error
line for a factory), finish the run and write a complete report."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

from conformance.adapters.oracle import OracleAdapter
from conformance.protocol import ToleranceOverride

FOREVER = 3600.0


class Boom(BaseException):
    """Not an Exception: escapes ``except Exception``."""


class Hostile(OracleAdapter):
    """The oracle, except that ``classify`` with ``num_tokens == trigger`` runs ``act`` first
    (``trigger`` None: every call), or the ``nth`` call does."""

    def __init__(self, act, trigger: int | None = None, nth: int | None = None) -> None:
        super().__init__()
        self.act, self.trigger, self.nth, self.calls = act, trigger, nth, 0

    def classify(self, handle, images, **call_args):
        self.calls += 1
        if (self.nth == self.calls if self.nth is not None
                else self.trigger in (None, call_args.get("num_tokens"))):
            self.act()
        return super().classify(handle, images, **call_args)


def _exit() -> None:
    os._exit(0)


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang() -> None:
    time.sleep(FOREVER)


def exits_at_8() -> Hostile:
    return Hostile(_exit, trigger=8)


def segfaults_at_8() -> Hostile:
    return Hostile(_segfault, trigger=8)


def hangs_at_8() -> Hostile:
    return Hostile(_hang, trigger=8)


def hangs_always() -> Hostile:
    return Hostile(_hang)


def hangs_7th_call() -> Hostile:
    return Hostile(_hang, nth=7)


class HangsInLoad(OracleAdapter):
    def load(self, checkpoint_dir):
        time.sleep(FOREVER)


def hangs_in_load() -> HangsInLoad:
    return HangsInLoad()


def hangs_in_factory() -> OracleAdapter:
    time.sleep(FOREVER)
    return OracleAdapter()


def leaves_a_thread() -> OracleAdapter:
    """Starts a non-daemon thread that never ends."""
    threading.Thread(target=time.sleep, args=(FOREVER,), name="forgotten").start()
    return OracleAdapter()


def raises_base_exception() -> OracleAdapter:
    raise Boom("from the factory")


def constant_logits_loose_override() -> OracleAdapter:
    """The issue's exploit: rtol=inf with an empty prefix (rejected when built)."""
    adapter = OracleAdapter()
    adapter.capabilities = replace(adapter.capabilities, tolerance_overrides=(
        ToleranceOverride("", float("inf"), "anything goes"),))
    return adapter


def override_matching_nothing() -> OracleAdapter:
    adapter = OracleAdapter()
    adapter.capabilities = replace(adapter.capabilities, tolerance_overrides=(
        ToleranceOverride("test_goldens.py::test_golden[no-such-case", 1e-9, "typo"),))
    return adapter


def large_override() -> OracleAdapter:
    """A float64 port loosening one golden far beyond 10x, with the second reason."""
    adapter = OracleAdapter()
    adapter.capabilities = replace(adapter.capabilities, tolerance_overrides=(
        ToleranceOverride("test_goldens.py::test_golden[cls-gran-8]", 1e-3,
                          "RoPE tables in float32", beyond_bound="the NPU has no float64"),))
    return adapter
