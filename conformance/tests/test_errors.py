"""Family 4: error behaviour (ARG-1..8) on the golden checkpoint cls-flex-block.

That checkpoint has embed_dim D = 16, depth 4, in_channels 3, patch_size 4 and
16x16 images; the batch holds B = 3 images. Every invalid call must raise an
exception whose message names the offending argument (ARG-8; the port's
adapter may translate native errors). Valid edge values (NumPy integer
scalars) must be accepted and give the same result as Python ints.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from conformance import callargs
from conformance.cases import make_images
from conformance.verify import oracle_expected, run

from .support import golden_checkpoint, read_config

IMAGES = make_images((3, 3, 16, 16), seed=0)
NAN_IMAGES = IMAGES.copy()
NAN_IMAGES[1, 0, 2, 3] = np.nan
HUGE_IMAGES = IMAGES.copy()
HUGE_IMAGES[2, 1, 5, 7] = -3e9  # finite, beyond LIM-4's bound of 1e8
EDGE_IMAGES = IMAGES.copy()
EDGE_IMAGES[0, 2, 1, 1] = 1e8  # LIM-4's bound itself: allowed

# (test id, argument named in the message, call kwargs, clause, capability needed)
INVALID: list[tuple[str, str, dict[str, Any], str, str | None]] = [
    ("num_tokens-0", "num_tokens", {"num_tokens": 0}, "ARG-1", None),
    ("num_tokens-negative", "num_tokens", {"num_tokens": -3}, "ARG-1", None),
    ("num_tokens-float", "num_tokens", {"num_tokens": 8.0}, "ARG-1", None),
    ("num_tokens-bool", "num_tokens", {"num_tokens": True}, "ARG-1", None),
    ("num_tokens-str", "num_tokens", {"num_tokens": "8"}, "ARG-1", None),
    ("mat_dim-0", "mat_dim", {"mat_dim": 0}, "ARG-2", None),
    ("mat_dim-above-D", "mat_dim", {"mat_dim": 17}, "ARG-2", None),
    ("mat_dim-float", "mat_dim", {"mat_dim": 8.0}, "ARG-2", None),
    ("mat_dim-bool", "mat_dim", {"mat_dim": True}, "ARG-2", None),
    ("mat_dim-list-length", "mat_dim", {"mat_dim": [4, 8]}, "ARG-2", "per_sample"),
    ("mat_dim-list-value", "mat_dim", {"mat_dim": [4, 0, 8]}, "ARG-2", "per_sample"),
    ("mat_dim-list-float", "mat_dim", {"mat_dim": [4, 8.0, 8]}, "ARG-2", "per_sample"),
    ("depth-0", "depth", {"depth": 0}, "ARG-3", None),
    ("depth-above", "depth", {"depth": 5}, "ARG-3", None),
    ("depth-negative", "depth", {"depth": -1}, "ARG-3", None),
    ("depth-float", "depth", {"depth": 2.0}, "ARG-3", None),
    ("depth-bool", "depth", {"depth": True}, "ARG-3", None),
    ("depth_tau-negative", "depth_tau", {"depth_tau": -0.1}, "ARG-4", "exit"),
    ("depth_tau-above-1", "depth_tau", {"depth_tau": 1.5}, "ARG-4", "exit"),
    ("depth_tau-nan", "depth_tau", {"depth_tau": float("nan")}, "ARG-4", "exit"),
    ("depth_tau-str", "depth_tau", {"depth_tau": "0.5"}, "ARG-4", "exit"),
    ("depth_tau-with-depth", "depth", {"depth": 2, "depth_tau": 0.5}, "ARG-4", "exit"),
    ("token_grans-empty", "token_grans", {"token_grans": []}, "ARG-5", None),
    ("token_grans-unsorted", "token_grans", {"token_grans": [8, 4]}, "ARG-5", None),
    ("token_grans-repeated", "token_grans", {"token_grans": [4, 4]}, "ARG-5", None),
    ("token_grans-zero", "token_grans", {"token_grans": [0, 4]}, "ARG-5", None),
    ("token_grans-float", "token_grans", {"token_grans": [2.0, 4]}, "ARG-5", None),
    ("exit_policy-unknown", "exit_policy", {"depth_tau": 0.5, "exit_policy": "max"}, "ARG-6",
     "exit"),
    ("exit_policy-type", "exit_policy", {"depth_tau": 0.5, "exit_policy": 1}, "ARG-6", "exit"),
    # ARG-6 (spec 0.2.1): checked whenever given, also without depth_tau (EXIT-4)
    ("exit_policy-unknown-without-depth_tau", "exit_policy", {"exit_policy": "max"}, "ARG-6",
     "exit"),
    ("exit_policy-type-without-depth_tau", "exit_policy", {"exit_policy": 1}, "ARG-6", "exit"),
    ("num_tokens-above-65536", "num_tokens", {"num_tokens": 65537}, "LIM-2", None),
    ("unknown-keyword", "num_token", {"num_token": 8}, "ARG-8", None),
]

# (test id, images, clause): images are the positional argument, named by capabilities.images_arg
INVALID_IMAGES = [
    ("rank-3", IMAGES[0], "ARG-7"),
    ("channels", IMAGES[:, :1], "ARG-7"),
    ("height-not-multiple", make_images((3, 3, 18, 16), seed=0), "ARG-7"),
    ("width-zero", make_images((3, 3, 16, 0), seed=0), "ARG-7"),
    ("batch-0", IMAGES[:0], "ARG-7"),
    ("non-finite", NAN_IMAGES, "ARG-7"),
    ("beyond-1e8", HUGE_IMAGES, "LIM-4"),
]


@pytest.fixture(scope="module")
def handle(port):
    if not port.capabilities.argument_validation:
        pytest.skip("port does not validate arguments (capabilities.argument_validation)")
    if "classification" not in port.capabilities.kinds:
        pytest.skip("port does not load classification models (capabilities.kinds)")
    directory = golden_checkpoint("cls-flex-block")
    config = read_config(directory)
    assumed = {"embed_dim": 16, "depth": 4, "in_channels": 3, "patch_size": 4}
    assert {k: config[k] for k in assumed} == assumed, "INVALID assumes another checkpoint"
    return port.load(str(directory))


def _require(port, need: str | None) -> None:
    if need == "exit" and not port.capabilities.exit_policies:
        pytest.skip("port has no confidence early exit (capabilities.exit_policies)")
    if need == "per_sample" and not port.capabilities.per_sample_width:
        pytest.skip("port has no per-sample widths (capabilities.per_sample_width)")


def _raised(call, clause: str, what: str) -> BaseException:
    """The exception ``call()`` raised; a call that returns fails the test naming ``clause``
    first (the report charges it there, ARG-8 second)."""
    try:
        call()
    except Exception as error:  # any type here; the tests that compare types say so
        return error
    raise AssertionError(f"{clause}: {what} must raise; the call returned")


def _assert_names(error: BaseException, name: str, clause: str) -> None:
    assert re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", str(error)), (
        f"{clause}, ARG-8: the error must name {name!r}; got {type(error).__name__}: {error}")


@pytest.mark.clauses("ARG-8")
@pytest.mark.parametrize(
    ("name", "kwargs", "clause", "need"),
    [pytest.param(*case[1:], id=case[0], marks=pytest.mark.clauses(case[3])) for case in INVALID])
def test_invalid_argument_raises(port, handle, name, kwargs, clause, need):
    """ARG-1..6, ARG-8: an invalid call argument raises, and the message names the argument
    (which case: see the test id and the INVALID table)."""
    _require(port, need)
    error = _raised(lambda: port.classify(handle, IMAGES, **kwargs), clause, f"classify({kwargs})")
    _assert_names(error, name, clause)


@pytest.mark.clauses("ARG-8")
@pytest.mark.parametrize(("images", "clause"),
                         [pytest.param(*case[1:], id=case[0], marks=pytest.mark.clauses(case[2]))
                          for case in INVALID_IMAGES])
def test_invalid_images_raise(port, handle, images, clause):
    """ARG-7, LIM-4, ARG-8: images of the wrong rank, channel count, size, batch, with
    non-finite values or values beyond 1e8 in magnitude raise, and the message names the
    images argument (capabilities.images_arg)."""
    error = _raised(lambda: port.classify(handle, images), clause,
                    f"classify(images of shape {images.shape})")
    _assert_names(error, port.capabilities.images_arg, clause)


@pytest.mark.clauses("ARG-4", "ARG-6", "ARG-8", "DIST-3")
@pytest.mark.parametrize(("name", "value", "clause"), [
    pytest.param("depth_tau", 0.5, "ARG-4", id="depth_tau", marks=pytest.mark.clauses("ARG-4")),
    pytest.param("exit_policy", "per_sample", "ARG-6", id="exit_policy",
                 marks=pytest.mark.clauses("ARG-6"))])
def test_distill_rejects_exit_arguments(port, name, value, clause):
    """ARG-4, ARG-6, DIST-3: the distill model takes no depth_tau and no exit_policy: giving
    either is a TypeError (not an argument of that model, spec 0.2.1) naming it."""
    if "distill" not in port.capabilities.kinds:
        pytest.skip("port does not load distill models (capabilities.kinds)")
    if not port.capabilities.argument_validation:
        pytest.skip("port does not validate arguments (capabilities.argument_validation)")
    handle = port.load(str(golden_checkpoint("distill-flex-block")))
    error = _raised(lambda: port.distill(handle, IMAGES, **{name: value}), clause,
                    f"distill({name}={value!r})")
    _assert_names(error, name, clause)
    assert isinstance(error, TypeError), (
        f"{clause}: {name} for a distill model must be a TypeError (it is not an argument of "
        f"that model, like an unknown keyword); got {type(error).__name__}: {error}")


def _shown(pattern: str, text: str) -> bool:
    """``pattern`` (a regex) occurs in ``text`` not inside a longer number or word."""
    return re.search(rf"(?<!\w)(?<!\d\.)(?:{pattern})(?!\w)(?!\.\d)", text) is not None


# (test id, call kwargs, error type, value shown (regex alternatives), allowed (each a regex),
#  clause, capability): what ARG-8 asks of the message beyond naming the argument
MESSAGES: list[tuple[str, dict[str, Any], type, str, tuple[str, ...], str, str | None]] = [
    ("num_tokens-0", {"num_tokens": 0}, ValueError, "0", ("1",), "ARG-1", None),
    ("num_tokens-float", {"num_tokens": 8.0}, TypeError, r"8\.0|float", ("int",), "ARG-1", None),
    ("num_tokens-above-65536", {"num_tokens": 65537}, ValueError, "65537", ("65536",), "LIM-2",
     None),
    ("mat_dim-above-D", {"mat_dim": 17}, ValueError, "17", ("16",), "ARG-2", None),
    ("depth-above", {"depth": 5}, ValueError, "5", ("4",), "ARG-3", None),
    ("depth_tau-above-1", {"depth_tau": 1.5}, ValueError, r"1\.5", ("0", "1"), "ARG-4", "exit"),
    ("token_grans-unsorted", {"token_grans": [8, 4]}, ValueError, r"8,\s*4",
     ("increasing",), "ARG-5", None),
    ("exit_policy-unknown", {"exit_policy": "max"}, ValueError, "max",
     ("batch_mean", "per_sample"), "ARG-6", "exit"),
]


@pytest.mark.clauses("ARG-8")
@pytest.mark.parametrize(("kwargs", "error", "value", "allowed", "clause", "need"), [
    pytest.param(*case[1:], id=case[0], marks=pytest.mark.clauses(case[5])) for case in MESSAGES])
def test_error_message_shows_value_and_allowed(port, handle, kwargs, error, value, allowed,
                                                clause, need):
    """ARG-8: the error is a TypeError for a wrong type and a ValueError for a wrong value, and
    its message shows the offending value and says what is allowed (e.g. "num_tokens must be
    an int >= 1, got 0": 0 shown, 1 allowed)."""
    _require(port, need)
    raised = _raised(lambda: port.classify(handle, IMAGES, **kwargs), clause,
                     f"classify({kwargs})")
    message = f"{type(raised).__name__}: {raised}"
    assert isinstance(raised, error), (
        f"ARG-8: {kwargs} must raise {error.__name__} ({clause}); got {message}")
    assert _shown(value, str(raised)), (
        f"ARG-8: the message must show the offending value of {kwargs}; got {message}")
    hidden = [a for a in allowed if not _shown(a, str(raised))]
    assert not hidden, (f"ARG-8: the message must say what is allowed ({clause}: expected "
                        f"{hidden} in it); got {message}")


@pytest.mark.clauses("LIM-4", "ARG-8")
def test_images_beyond_1e8_message(port, handle):
    """LIM-4, ARG-8: images with a finite value of magnitude 3e9 raise a ValueError naming the
    images argument and showing the limit 1e8 (as 1e+08, 1e8 or 100000000)."""
    error = _raised(lambda: port.classify(handle, HUGE_IMAGES), "LIM-4",
                    "classify(images with a value of -3e9)")
    message = f"{type(error).__name__}: {error}"
    assert isinstance(error, ValueError), f"LIM-4: must be a ValueError; got {message}"
    _assert_names(error, port.capabilities.images_arg, "LIM-4")
    assert _shown(r"1e\+?0?8|1\.0e\+?0?8|100000000(\.0)?|100,000,000", str(error)), (
        f"LIM-4: the message must show the limit 1e8; got {message}")


@pytest.mark.clauses("LIM-4")
def test_images_at_1e8_accepted(port, handle, check):
    """LIM-4: a value of magnitude exactly 1e8 is allowed: the call returns the oracle's
    logits (within TOL-1)."""
    check.start_case({"check": "lim-4-edge", "checkpoint": "cls-flex-block",
                      "image_shape": list(IMAGES.shape), "image_seed": 0,
                      "set_value": {"index": [0, 2, 1, 1], "value": 1e8}})
    expected = oracle_expected(golden_checkpoint("cls-flex-block"), EDGE_IMAGES, {})
    try:
        logits = run(port, handle, "classification", EDGE_IMAGES, {})["logits"]
    except Exception as error:
        check.raised(error, clause="LIM-4", what="images with a value of 1e8")
    else:
        check.close("logits", logits, expected.logits, clause="LIM-4")
    check.assert_ok("port vs oracle, images with a value of 1e8")


# (argument, clause, Python value, the same value with NumPy integer types)
NUMPY_ARGUMENTS = [
    ("num_tokens", "ARG-1", 6, np.int64(6)),
    ("num_tokens", "ARG-1", 8, np.int32(8)),
    ("mat_dim", "ARG-2", 7, np.int64(7)),
    ("mat_dim", "ARG-2", [4, 16, 7], [np.int64(4), np.int64(16), np.int64(7)]),
    ("depth", "ARG-3", 2, np.int64(2)),
    ("token_grans", "ARG-5", [2, 4], [np.int64(2), np.int64(4)]),
]


@pytest.mark.clauses("ARG-1", "ARG-2", "ARG-3", "ARG-5")
def test_numpy_integers_accepted(port, check):
    """ARG-1, ARG-2, ARG-3, ARG-5: NumPy integer scalars are ints: num_tokens, mat_dim (scalar
    and per-sample list), depth and token_grans given as np.int64 / np.int32 give the same
    logits as Python ints, one argument at a time on the flex/block-mask checkpoint (where
    upstream's flex attention crashes on a NumPy num_tokens; spec/divergences.md). A failure
    names the clause of that argument; the repro records the NumPy types."""
    if "classification" not in port.capabilities.kinds:
        pytest.skip("port does not load classification models (capabilities.kinds)")
    handle = port.load(str(golden_checkpoint("cls-flex-block")))
    images_ref = {"image_shape": list(IMAGES.shape), "image_seed": 0}
    for name, clause, python_value, numpy_value in NUMPY_ARGUMENTS:
        if isinstance(python_value, list) and name == "mat_dim" and (
                not port.capabilities.per_sample_width):
            continue
        typed = {name: numpy_value}
        check.start_case({"check": "oracle", "checkpoint": "cls-flex-block",
                          "images": images_ref, "call_args": callargs.encode(typed)})
        reference = run(port, handle, "classification", IMAGES, {name: python_value})["logits"]
        try:
            logits = run(port, handle, "classification", IMAGES, typed)["logits"]
        except Exception as error:
            check.raised(error, clause=clause, what=f"{name}={numpy_value!r}")
            break
        if not check.close("logits", logits, reference, clause=clause, versus="port",
                           where=f"{name}={numpy_value!r}").ok:
            break
    check.assert_ok("NumPy integer arguments vs Python ints")
