"""Family 6: the port's own loader, through the adapter's ``load`` (CKPT-5..9, LIM-1, LIM-2).

Every bad checkpoint is built at test time in a temporary directory from the committed
golden ``cls-flex-block`` with one defect (``conformance/corrupt.py``: NaN and infinite
weights, missing, unexpected and mis-shaped tensors, bad ``config.json``, a truncated or
corrupt ``model.safetensors``, only a ``pytorch_model.bin``, a FIFO or directory named
``config.json``, sizes beyond LIM-1/LIM-2, a ``depth`` of 10^9 for a 4-block file). The
port's ``load`` must raise, the message naming the offending tensor, field or file
(CKPT-5: every problem in one error), never hang (the call time limit applies) and never
open a pickle file. A defect a loader must ignore (a pickle file beside the weights) must
load.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from conformance import corrupt
from conformance.cases import make_images
from conformance.verify import oracle_expected, run

from .support import golden_checkpoint, scratch_dir

SOURCE = "cls-flex-block"
IMAGES = make_images((3, 3, 16, 16), seed=0)


def _require(port) -> None:
    if "classification" not in port.capabilities.kinds:
        pytest.skip("port does not load classification models (capabilities.kinds)")


def _load_error(port, directory) -> BaseException | None:
    """The exception ``port.load`` raised on the bad checkpoint, or None if it loaded."""
    try:
        port.load(str(directory))
    except Exception as error:  # any type: a non-Python port's errors arrive translated
        return error
    return None


@pytest.mark.parametrize("corruption", [
    pytest.param(c, id=c.id, marks=pytest.mark.clauses(c.clause)) for c in corrupt.CORRUPTIONS])
def test_bad_checkpoint(port, corruption):
    """CKPT-5, CKPT-6, CKPT-7, CKPT-8, LIM-1, LIM-2: loading a checkpoint with one defect
    (see the test id and conformance/corrupt.py) raises an error naming the offending
    tensor, field or file, without hanging; a pickle file beside valid weights is ignored."""
    _require(port)
    if corruption.posix_only and not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs need a POSIX system")
    with scratch_dir() as tmp:
        corruption.build(golden_checkpoint(SOURCE), tmp / "checkpoint")
        error = _load_error(port, tmp / "checkpoint")
    if corruption.expect == "ignore":
        assert error is None, (f"{corruption.clause}: {corruption.id}: the checkpoint must "
                               f"load (the extra file is ignored); load raised "
                               f"{type(error).__name__}: {error}")
        return
    assert error is not None, (f"{corruption.clause}: {corruption.id}: load must reject this "
                               "checkpoint; it loaded")
    missing = [name for name in corruption.names if name not in str(error)]
    assert not missing, (f"{corruption.clause}: {corruption.id}: the error must name "
                         f"{missing}; got {type(error).__name__}: {error}")


@pytest.mark.clauses("CKPT-7", "CKPT-5")
def test_error_lists_at_most_50_problems(port):
    """CKPT-7: a checkpoint with 200 unexpected tensors is rejected with a message listing
    at most 50 of them (then "... and N more problems"), but at least one."""
    _require(port)
    with scratch_dir() as tmp:
        corrupt.MANY_UNEXPECTED.build(golden_checkpoint(SOURCE), tmp / "checkpoint")
        error = _load_error(port, tmp / "checkpoint")
    assert error is not None, "CKPT-5: 200 unexpected tensors: load must reject the checkpoint"
    listed = set(re.findall(r"extra\.\d{3}\.weight", str(error)))
    assert 1 <= len(listed) <= corrupt.MAX_LISTED_PROBLEMS, (
        f"CKPT-7: the error must list between 1 and {corrupt.MAX_LISTED_PROBLEMS} of the 200 "
        f"unexpected tensors, it lists {len(listed)}: {str(error)[:300]}")


@pytest.mark.clauses("CKPT-9", "CKPT-5")
def test_float64_beyond_float32(port, check):
    """CKPT-9, CKPT-5: an F64 checkpoint holding the finite value 1e39 (beyond float32's range)
    in output_adapter.ffn.weight: a loader storing a narrower dtype rejects it, naming the
    tensor and the overflow; a loader keeping binary64 loads it and matches the oracle's
    logits (never an infinity stored silently)."""
    _require(port)
    bad = corrupt.BEYOND_FLOAT32
    with scratch_dir() as tmp:
        directory = tmp / "checkpoint"
        bad.build(golden_checkpoint(SOURCE), directory)
        try:
            handle = port.load(str(directory))
        except Exception as error:
            message = str(error)
            assert bad.names[0] in message and "overflow" in message.lower(), (
                f"CKPT-9: the error must name the tensor {bad.names[0]!r} and say the value "
                f"overflows; got {type(error).__name__}: {message}")
            return
        expected = oracle_expected(directory, IMAGES, {})
        check.start_case({"check": "corrupt", "corruption": bad.id, "checkpoint": SOURCE,
                          "images": {"image_shape": list(IMAGES.shape), "image_seed": 0}})
        try:  # in the directory's lifetime: a restarted worker reloads the handle from it
            logits = run(port, handle, "classification", IMAGES, {})["logits"]
        except Exception as error:
            logits = None
            check.raised(error, clause="CKPT-9", what="classify after loading")
    if logits is not None:
        finite = np.isfinite(np.asarray(logits, dtype=np.float64)).all()
        if not finite:
            check.raised(ValueError("non-finite logits: the loader stored an infinity"),
                         clause="CKPT-9", what="logits")
        else:
            check.close("logits", logits, expected.logits, clause="CKPT-9")
    check.assert_ok("port vs oracle on a binary64 checkpoint beyond the float32 range")
