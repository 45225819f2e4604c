"""Shared port handles with a call history, and locating state leaks between calls (STATE-1).

The goldens and invariants run on **one shared handle per checkpoint**, in a
seeded random order (``--seed``), so a port that keeps state between calls
fails wherever that state leaks, not only in the two dedicated STATE-1 tests.

Every call on a shared handle is appended to its ``history`` as a ``Call``
(method, images reference, call arguments) so that a leak can be replayed:
``locate_leak`` re-runs the failing call on a fresh handle, shrinks the replayed
history (the last ``MAX_REPLAY`` calls before it, or a doubled window up to the whole
history when the state was left earlier) by delta debugging to the shortest
sub-history that reproduces the difference, and compares both sides' stages when the
port exposes them. The result is a ``fresh-handle`` repro that ``python -m conformance.repro``
re-runs.

Images are carried as ``Images``: the array plus a JSON reference that rebuilds
it (``{"golden": case id}`` or ``{"image_shape", "image_seed"}``, optionally
``"rows": [start, stop]``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import callargs
from .check import Checker, compare
from .protocol import PortAdapter
from .verify import first_divergent_stage, run

# First window of earlier calls replayed to reproduce a leak (doubled up to the whole
# history while it does not; then shrunk by delta debugging).
MAX_REPLAY = 64
METHODS = {"classification": "classify", "distill": "distill"}


@dataclass(frozen=True)
class Images:
    """Images (B, C, H, W) float32 and the JSON reference that rebuilds them."""

    array: np.ndarray
    ref: Mapping[str, Any]

    @classmethod
    def seeded(cls, shape: tuple[int, ...], seed: int) -> Images:
        from .cases import make_images

        return cls(make_images(shape, seed), {"image_shape": list(shape), "image_seed": seed})

    def rows(self, start: int, stop: int) -> Images:
        """Rows ``start:stop`` of the batch (B' = stop - start)."""
        return Images(self.array[start:stop], {**self.ref, "rows": [start, stop]})


def images_from_ref(ref: Mapping[str, Any]) -> np.ndarray:
    """Rebuild the images of an ``Images.ref``."""
    from .cases import make_images
    from .goldens import GOLDENS_DIR, case_tensors, load_manifest

    if "golden" in ref:
        case = next(c for c in load_manifest()["cases"] if c["id"] == ref["golden"])
        images = case_tensors(GOLDENS_DIR, case)["images"]
    else:
        images = make_images(ref["image_shape"], ref["image_seed"])
    if "rows" in ref:
        images = images[ref["rows"][0]:ref["rows"][1]]
    return images


@dataclass(frozen=True)
class Call:
    """One call made on a handle: ``classify`` / ``distill`` (by model kind) or ``stages``."""

    kind: str
    images: Images
    call_args: Mapping[str, Any]
    stages: bool = False

    def invoke(self, port: PortAdapter, handle: Any) -> Mapping[str, Any]:
        if self.stages:
            return port.stages(handle, self.images.array, **self.call_args)
        return run(port, handle, self.kind, self.images.array, self.call_args)

    def to_json(self) -> dict[str, Any]:
        return {"method": "stages" if self.stages else METHODS[self.kind],
                "images": dict(self.images.ref), "call_args": callargs.encode(self.call_args)}


def call_from_json(data: Mapping[str, Any], kind: str) -> Call:
    """Inverse of ``Call.to_json`` (``kind`` from the checkpoint's config)."""
    ref = data["images"]
    return Call(kind, Images(images_from_ref(ref), ref), callargs.decode(data["call_args"]),
                stages=data.get("method") == "stages")


@dataclass
class SharedHandle:
    """A handle of one checkpoint shared by many tests, with every call it has seen.

    ``checkpoint`` is the JSON reference of the checkpoint (``{"checkpoint": name}``
    for a committed golden checkpoint, ``{"scenario": {...}}`` for a drawn one).
    In *fresh mode* (``fresh()``) every call gets a newly loaded handle instead and
    the history is left alone: used to tell a state leak from a real fault.
    """

    port: PortAdapter
    checkpoint: Mapping[str, Any]
    directory: Path
    kind: str
    handle: Any = None
    history: list[Call] = field(default_factory=list)
    fresh_mode: bool = False
    log: list[tuple[Call, int | None, Any]] | None = None  # (call, history index, output)
    siblings: Callable[[], list[SharedHandle]] = list  # every shared handle of the run

    def __post_init__(self) -> None:
        if self.handle is None:
            self.handle = self.load()

    def load(self) -> Any:
        return self.port.load(str(self.directory))

    def call(self, images: Images, call_args: Mapping[str, Any], *,
             stages: bool = False) -> Mapping[str, Any]:
        """Run one call (``classify``/``distill``, or ``stages``) and record it."""
        call = Call(self.kind, images, dict(call_args), stages)
        if self.fresh_mode:
            handle, index = self.load(), None
        else:
            handle, index = self.handle, len(self.history)
            self.history.append(call)  # before running: a call that raises may still leave state
        try:
            out = call.invoke(self.port, handle)
        except Exception as error:
            if self.log is not None:
                self.log.append((call, index, error))
            raise
        if self.log is not None:
            self.log.append((call, index, out))
        return out


def outputs_agree(a: Any, b: Any, rtol: float) -> bool:
    """True when two call outputs (dicts of arrays, or exceptions) are the same within rtol."""
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return (isinstance(a, BaseException) and isinstance(b, BaseException)
                and type(a) is type(b))
    if set(a) != set(b):
        return False
    return all(compare(k, a[k], np.asarray(b[k]), rtol).ok for k in a if a[k] is not None)


def _outcome(call: Call, port: PortAdapter, handle: Any) -> Any:
    try:
        return call.invoke(port, handle)
    except Exception as error:
        return error


def ddmin(items: list, reproduces: Callable[[list], bool], budget: int = 200) -> list:
    """Zeller's delta debugging: a 1-minimal sublist of ``items`` (which reproduces) that
    still ``reproduces``: removing any single element of the result stops it (within
    ``budget`` trials; the order of the kept elements is preserved)."""
    n, trials = 2, 0
    while len(items) >= 2 and trials < budget:
        size = -(-len(items) // n)  # ceil
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        for i, chunk in enumerate(chunks):
            complement = [x for j, c in enumerate(chunks) if j != i for x in c]
            trials += 2
            if reproduces(chunk):
                items, n = chunk, 2
                break
            if len(chunks) > 2 and reproduces(complement):
                items, n = complement, max(n - 1, 2)
                break
        else:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    return items


def reproducing_window(history: list, index: int,
                       reproduces: Callable[[list], bool]) -> list | None:
    """The shortest suffix ``history[index - size:index]`` that ``reproduces``, for
    ``size`` = ``MAX_REPLAY``, twice that, ... up to all ``index`` earlier calls, or None.

    A port's state may be set long before the call it spoils (a mask cache that later
    default calls keep), so the window grows until it holds that call; the trials cost
    at most about twice the replay of the whole history."""
    size = MAX_REPLAY
    while True:
        window = history[max(0, index - size):index]
        if reproduces(window):
            return window
        if size >= index:
            return None
        size *= 2


def locate_leak(shared: SharedHandle, index: int, rtol: float) -> dict[str, Any]:
    """Replay the history before ``shared.history[index]`` to reproduce a state leak.

    Returns ``{"repro": fresh-handle repro, "divergence": first divergent stage or None,
    "reproduced": bool, "source": str}``. The last ``MAX_REPLAY`` earlier calls are
    replayed on a fresh handle, then twice as many, up to the whole history
    (``reproducing_window``); when that reproduces the difference they are shrunk by
    delta debugging (``ddmin``) to the shortest sub-history that still does, usually one
    or two calls. When it does not, the history of every other shared handle of the run
    is replayed on its own fresh handle before the call (state shared across handles) and
    ``source`` names the one that reproduces, if any.
    """
    port, call = shared.port, shared.history[index]
    fresh = _outcome(call, port, shared.load())

    def replayed(history: list[Call], other: SharedHandle | None = None) -> Any:
        source = other or shared
        handle = source.load()
        for earlier in history:
            _outcome(earlier, port, handle)
        return handle if other is None else shared.load()

    def reproduces(history: list[Call], other: SharedHandle | None = None) -> bool:
        return bool(history) and not outputs_agree(
            _outcome(call, port, replayed(history, other)), fresh, rtol)

    window = reproducing_window(shared.history, index, reproduces)
    history = ddmin(window, reproduces) if window is not None else None
    recorded = shared.history[max(0, index - MAX_REPLAY):index]
    source = f"{len(history)} of the {index} earlier call(s) on this handle" if history else ""
    if history is None:
        for other in shared.siblings():
            if other is not shared and reproduces(other.history[-MAX_REPLAY:], other):
                source = (f"not by this handle's calls but by those of the "
                          f"{other.checkpoint} handle (state shared across handles)")
                break
    divergence = None
    if history is not None and port.capabilities.stages:
        leaked = _outcome(Call(call.kind, call.images, call.call_args, True), port,
                          replayed(history))
        clean = _outcome(Call(call.kind, call.images, call.call_args, True), port, shared.load())
        if not isinstance(leaked, BaseException) and not isinstance(clean, BaseException):
            divergence = first_divergent_stage(leaked, clean, rtol)
            divergence["versus"] = "the same call on a fresh handle"
    repro = {"check": "fresh-handle", **shared.checkpoint,
             "history": [c.to_json() for c in (history or recorded)], **call.to_json()}
    return {"repro": repro, "divergence": divergence, "reproduced": history is not None,
            "source": source}


def final_example() -> bool:
    """False while Hypothesis searches and shrinks; True on its final replay of the
    falsifying example, and outside Hypothesis (the goldens)."""
    try:
        from hypothesis.control import current_build_context

        return bool(current_build_context().is_final)
    except Exception:  # InvalidArgument: no Hypothesis test is running
        return True


def check_on_shared_handle(check: Checker, shared: SharedHandle,
                           body: Callable[[Checker], None], what: str,
                           locate: Callable[[], None] | None = None) -> None:
    """Run ``body(check)`` (its calls go through ``shared.call``) and assert.

    When a check fails, or a call raises, the body is run again with every call on a
    fresh handle. If it then passes, the failure is a state leak: the failed checks are
    re-attributed to STATE-1, and the first call whose result differs from a fresh
    handle's is located (``locate_leak``): its replayable history becomes the repro and
    its stages give the first divergent stage. ``body`` must draw all random data
    before it is called (it runs twice with the same arguments). Otherwise ``locate()``
    (when given) places the genuine failure before the assertion is raised: once, on
    Hypothesis' final replay of the shrunk example (``final_example``), so the repro and its
    location are the minimal example's and no shrink step pays for the oracle re-runs of
    locating; the failures before it are recorded unlocated (``provisional``), and on a
    handle without earlier calls (a property's own checkpoint) not even re-run fresh.
    """
    earlier_calls = len(shared.history)
    shared.log = []
    try:
        body(check)
        error = None
    except Exception as raised:  # a port exception: maybe caused by leaked state
        error = raised
    shared_log, shared.log = shared.log, None
    if error is None and not check.failed:
        return
    if check.first_failure is not None and not check.provisional:  # already located
        if error is not None:
            raise error
        check.assert_ok(what)
    if not earlier_calls and not final_example():  # a new handle: no state to leak yet
        if error is not None:
            raise error
        check.assert_ok(what, provisional=True)
    trial = Checker(check.tolerance)
    shared.fresh_mode, shared.log = True, []
    try:
        body(trial)
        clean = not trial.failed
    except Exception:
        clean = False
    finally:
        fresh_log, shared.fresh_mode, shared.log = shared.log, False, None
    if not clean:
        if error is not None:
            raise error
        final = final_example()
        if locate is not None and final:
            locate()
        check.assert_ok(what, provisional=not final)
        return
    leaked = next(((c, i) for (c, i, out), (_, _, fresh) in zip(shared_log, fresh_log,
                                                               strict=False)
                   if i is not None and not outputs_agree(out, fresh, check.tolerance.rtol)),
                  None)
    if error is not None:
        check.raised(error, clause="STATE-1")
    how = ("passes when every call gets a fresh handle: state left by earlier calls on the "
           "shared handle changed this result")
    check.reattribute("STATE-1", how)
    if leaked is not None:
        found = locate_leak(shared, leaked[1], check.tolerance.rtol)
        check.repro = {**found["repro"], "test_case": check.repro}
        check.divergence = found["divergence"]
        if not found["reproduced"]:
            check.attribution += ("; replaying the recorded history on a fresh handle did not "
                                  "reproduce it (the port's state depends on more than its "
                                  "calls)" + (f"; reproduced {found['source']}"
                                              if found["source"] else ""))
    check.assert_ok(what)


class HandlePool:
    """One ``SharedHandle`` per committed golden checkpoint (GOLD-1), loaded on first use."""

    def __init__(self, port: PortAdapter) -> None:
        self.port = port
        self._shared: dict[str, SharedHandle] = {}

    def shared(self, name: str) -> SharedHandle:
        if name not in self._shared:
            from .goldens import GOLDENS_DIR, load_manifest
            from .verify import kind_of

            directory = GOLDENS_DIR / load_manifest()["checkpoints"][name]["path"]
            config = json.loads((directory / "config.json").read_text())
            self._shared[name] = SharedHandle(self.port, {"checkpoint": name}, directory,
                                              kind_of(config),
                                              siblings=lambda: list(self._shared.values()))
        return self._shared[name]
