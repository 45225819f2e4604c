"""The port protocol: what a port hands the conformance suite.

A port is checked through an *adapter*: a small Python object, built by a
zero-argument factory named on the command line
(``python -m conformance --impl mypackage.adapter:factory``), that translates
between the suite's NumPy arrays and the port's own runtime (JAX, MLX, ONNX
Runtime, a C++ binding, ...).

Adapter contract (``PortAdapter``):

``capabilities``
    A ``Capabilities`` instance. Every test that needs something the port does
    not declare is *skipped with a reason*, never silently passed or failed.

``load(checkpoint_dir) -> handle``
    Load a checkpoint directory (``config.json`` + ``model.safetensors``, spec
    CKPT-1..3) and return any object; the suite passes it back unchanged. One
    handle is used for many calls (statelessness, STATE-1, is tested on it).

``classify(handle, images, **call_args) -> dict``
    ``images``: ``np.ndarray`` float32 ``(B, C, H, W)`` (values are exactly
    representable in float32; cast to the port's compute dtype). ``call_args``
    holds only the arguments a test sets, by their Python API names:
    ``num_tokens``, ``mat_dim`` (int or list of B ints), ``depth``,
    ``depth_tau``, ``token_grans`` (list of ints), ``exit_policy``.
    Integers may arrive as Python ``int`` **or NumPy integer scalars**
    (``np.int64(6)``, also inside ``mat_dim`` / ``token_grans`` lists) and
    ``depth_tau`` as a Python ``float`` or a NumPy float scalar: they must give
    the same result as Python values (ARG-1..5; the suite tests it, and repros
    record the exact types that were passed).
    Returns ``{"logits": (B, 1, C) array, "exit_depths": (B,) int array}``;
    ``exit_depths`` may be omitted: exit depths are then not compared (the logits
    at the exit depth still are) and the oracle-free early-exit test skips.

``distill(handle, images, **call_args) -> dict`` (when ``capabilities.distill``)
    For a DistillAdaPerceiver checkpoint (config.json has ``output_feat_dim``):
    ``{"logits": (B, 1, C), "features": (B, M, output_feat_dim)}``. Call args as
    ``classify`` without ``depth_tau`` / ``exit_policy``.

``stages(handle, images, **call_args) -> dict[str, np.ndarray]`` (when ``capabilities.stages``)
    Intermediate tensors named as in docs/architecture.md: ``patches``
    ``(B, M, D)``, ``read`` ``(B, N, D)``, ``block_0`` .. ``block_{d-1}``
    ``(B, N, D)``, ``write`` ``(B, 1, D)``. Used for the prefix property
    (MASK-6) and, on a failure, to report the first stage that diverges.

``preprocess(kind, image, size) -> np.ndarray`` (for each kind in ``capabilities.preprocessing``)
    The port's image preprocessing (spec preprocessing.md), when it has one:
    ``kind`` ``"imagenet"``: ``image`` a uint8 ``(3, H, W)`` array, ``size`` = S, returns
    the ``(3, S, S)`` model input (PRE-1 resize, PRE-2 crop, PRE-3 normalisation);
    ``kind`` ``"digits"``: ``image`` a uint8 ``(1, H, W)`` grey digit, ``size`` = 8, returns
    the ``(1, 8, 8)`` input (PRE-5). Optional: a port without preprocessing declares none
    and those tests skip with the reason.

``anytime(handle, images, **call_args) -> dict`` (when ``capabilities.anytime``)
    The anytime grid (spec anytime.md, ANY-1..4): ``{"logits": (B, K, G, C) array,
    "granularities": (G,) ints}``, entry ``[b, l, j]`` being sample b's logits at depth
    l+1 with G[j] latents. Call args: ``num_tokens``, ``mat_dim``, ``token_grans``.
    For a distill checkpoint the grid holds its logits (ANY-2).

Invalid call arguments (ARG-1..8, when ``capabilities.argument_validation``):
the adapter lets the port raise, or raises itself, any exception whose
message names the offending argument (e.g. ``"num_tokens must be an int >= 1,
got 0"``).

Tolerances (TOL-1) come from ``conformance.tolerances`` by
``capabilities.dtype``; a port may loosen them for chosen tests with
``ToleranceOverride`` entries, each carrying a reason that the report shows
(bounded and scoped: see ``ToleranceOverride``).
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .tolerances import RTOL

KINDS = ("classification", "distill")
EXIT_POLICIES = ("batch_mean", "per_sample")
ATTN_LAYERS = ("flex", "full")
BLOCK_MASKS = ("block", "causal", "none")
PREPROCESSING = ("imagenet", "digits")


# A port override may loosen TOL-1 up to this factor without ``beyond_bound``.
MAX_OVERRIDE_FACTOR = 10


@dataclass(frozen=True)
class ToleranceOverride:
    """Use ``rtol`` for every test whose id starts with ``test_prefix`` (TOL-1).

    ``reason`` is mandatory and is printed in the report next to the results it
    affected, e.g. ``ToleranceOverride("test_goldens.py::test_golden[cls-ntk",
    3e-4, "RoPE tables computed in float16 on the NPU")``. An override is scoped and
    bounded: ``test_prefix`` names a module and the start of a test name
    (``"<module>.py::<name>"``) and must match at least one test of the run;
    ``rtol`` is finite with ``0 < rtol < 1`` (at 1 an all-zero output passes); above
    ``MAX_OVERRIDE_FACTOR`` times the port's TOL-1 tolerance it also needs
    ``beyond_bound``, a second reason saying why, shown in the report's headline with
    every other override.
    """

    test_prefix: str
    rtol: float
    reason: str
    beyond_bound: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"ToleranceOverride for {self.test_prefix!r} needs a reason")
        module, sep, name = (self.test_prefix.partition("::") if isinstance(self.test_prefix, str)
                             else ("", "", ""))
        if not module.strip() or not sep or not name.strip():
            raise ValueError("ToleranceOverride.test_prefix must name the tests it loosens as "
                             f"'<module>.py::<test name or its start>', got {self.test_prefix!r}")
        rtol = self.rtol
        if (not isinstance(rtol, numbers.Real) or isinstance(rtol, bool)
                or not math.isfinite(rtol) or not 0 < rtol < 1):
            raise ValueError(f"ToleranceOverride {self.test_prefix!r}: rtol must be a finite "
                             f"number with 0 < rtol < 1, got {rtol!r}")
        if not isinstance(self.beyond_bound, str):
            raise ValueError(f"ToleranceOverride {self.test_prefix!r}: beyond_bound must be a "
                             f"string, got {self.beyond_bound!r}")


@dataclass(frozen=True)
class Capabilities:
    """What a port implements; anything not declared is skipped with a reason.

    Attributes:
        name: implementation name shown in the report (``"adaperceiver-jax"``).
        version: the port's version string.
        dtype: compute dtype, a key of ``conformance.tolerances.RTOL``
            (``"float32"``, ``"float64"``, ...); selects the tolerance (TOL-1).
        kinds: model classes the port loads: ``"classification"``, ``"distill"``.
        per_sample_width: ``mat_dim`` may be a list with one width per sample (MAT-3).
        exit_policies: confidence early-exit policies supported (EXIT-2, EXIT-3);
            empty when ``depth_tau`` is not supported.
        attn_layers: config ``attn_layer`` values honoured (MASK-1).
        block_masks: config ``block_mask`` values honoured with ``attn_layer="flex"``
            (MASK-3..5).
        resized_inputs: images whose patch grid differs from the trained grid
            (pos_embed resize, PATCH-2).
        argument_validation: invalid call arguments raise (ARG-1..8).
        images_arg: the name the port's API gives the images, which its error
            messages use (ARG-8: ``"images"`` in the oracle, ``"x"`` in PyTorch).
        stages: the adapter implements ``stages`` (prefix property, divergence report).
        anytime: the adapter implements ``anytime``, the grid of every (depth x
            granularity) logit of one call (ANY-1..4); default False: its tests skip.
        preprocessing: the preprocessing kinds ``preprocess`` implements, ``"imagenet"``
            (PRE-1..3) and ``"digits"`` (PRE-5); default none: their tests skip.
        versions: extra version strings for the report (runtime, compiler, ...).
        tolerance_overrides: per-test loosened tolerances, each with a reason.
    """

    name: str
    version: str
    dtype: str
    kinds: frozenset[str] = frozenset(KINDS)
    per_sample_width: bool = True
    exit_policies: frozenset[str] = frozenset(EXIT_POLICIES)
    attn_layers: frozenset[str] = frozenset(ATTN_LAYERS)
    block_masks: frozenset[str] = frozenset(BLOCK_MASKS)
    resized_inputs: bool = True
    argument_validation: bool = True
    images_arg: str = "images"
    stages: bool = False
    anytime: bool = False
    preprocessing: frozenset[str] = frozenset()
    versions: Mapping[str, str] = field(default_factory=dict)
    tolerance_overrides: tuple[ToleranceOverride, ...] = ()

    def __post_init__(self) -> None:
        """Validate every field when the adapter is built, so a typo fails before any test."""
        for name in ("name", "version", "images_arg"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Capabilities.{name} must be a non-empty string, got {value!r}")
        if self.dtype not in RTOL:
            raise ValueError(f"Capabilities.dtype must be one of {sorted(RTOL)} (the TOL-1 "
                             f"table), got {self.dtype!r}")
        for name, value, allowed in (("kinds", self.kinds, KINDS),
                                     ("exit_policies", self.exit_policies, EXIT_POLICIES),
                                     ("attn_layers", self.attn_layers, ATTN_LAYERS),
                                     ("block_masks", self.block_masks, BLOCK_MASKS),
                                     ("preprocessing", self.preprocessing, PREPROCESSING)):
            if isinstance(value, str) or not isinstance(value, (set, frozenset, list, tuple)):
                raise ValueError(f"Capabilities.{name} must be a set of strings from "
                                 f"{list(allowed)}, got {value!r}")
            unknown = set(value) - set(allowed)
            if unknown:
                raise ValueError(f"Capabilities.{name} has unknown values {sorted(unknown)}; "
                                 f"allowed {list(allowed)}")
            object.__setattr__(self, name, frozenset(value))  # frozen: normalise in place
        for name in ("per_sample_width", "resized_inputs", "argument_validation", "stages"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Capabilities.{name} must be True or False, "
                                 f"got {getattr(self, name)!r}")
        if not isinstance(self.versions, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.versions.items()):
            raise ValueError(f"Capabilities.versions must map names to version strings, "
                             f"got {self.versions!r}")
        if not isinstance(self.tolerance_overrides, (tuple, list)) or not all(
                isinstance(o, ToleranceOverride) for o in self.tolerance_overrides):
            raise ValueError("Capabilities.tolerance_overrides must be a tuple of "
                             f"ToleranceOverride, got {self.tolerance_overrides!r}")
        object.__setattr__(self, "tolerance_overrides", tuple(self.tolerance_overrides))
        bound = MAX_OVERRIDE_FACTOR * RTOL[self.dtype]
        for override in self.tolerance_overrides:
            if override.rtol > bound and not override.beyond_bound.strip():
                raise ValueError(
                    f"ToleranceOverride {override.test_prefix!r}: rtol {override.rtol:g} is more "
                    f"than {MAX_OVERRIDE_FACTOR} x the {self.dtype} tolerance of TOL-1 "
                    f"({RTOL[self.dtype]:g}); give beyond_bound='<why>' (shown in the report's "
                    "headline) or a smaller rtol")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (sets as sorted lists) for the report."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, (set, frozenset)):
                data[key] = sorted(value)
        data["versions"] = dict(self.versions)
        return data


@runtime_checkable
class PortAdapter(Protocol):
    """The adapter interface; see the module docstring for the full contract."""

    capabilities: Capabilities

    def load(self, checkpoint_dir: str) -> Any: ...

    def classify(self, handle: Any, images: np.ndarray, **call_args: Any) -> dict: ...


class AdapterError(ValueError):
    """``--impl`` could not be turned into a usable adapter; the message says why."""


def load_adapter(spec: str) -> PortAdapter:
    """Build the adapter named by ``"package.module:factory"`` and check its shape.

    Raises ``AdapterError`` (a ``ValueError``) naming the problem for every way this
    can go wrong: a bad spec, a module that fails to import (``ImportError``,
    ``SyntaxError``, any exception or ``sys.exit`` at import time), a missing or
    non-callable factory, a factory that needs arguments or raises, a result
    that is not an adapter, invalid capabilities, a declared capability without
    its method. Anything the factory or the import raises counts, ``BaseException``
    subclasses included; only ``KeyboardInterrupt`` goes through.
    """
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise AdapterError(f"--impl must look like 'package.module:factory', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # SystemExit (sys.exit() at import time) and the like
        raise AdapterError(f"--impl {spec!r}: importing {module_name} failed: "
                           f"{type(error).__name__}: {error}") from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise AdapterError(f"--impl {spec!r}: {module_name} has no callable {factory_name!r}")
    try:
        adapter = factory()
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # SystemExit or any other BaseException subclass
        hint = (" (the factory must take no arguments)" if isinstance(error, TypeError)
                and "argument" in str(error) else "")
        raise AdapterError(f"--impl {spec!r}: calling {factory_name}() raised "
                           f"{type(error).__name__}: {error}{hint}") from error
    try:
        caps = getattr(adapter, "capabilities", None)
    except Exception as error:  # a property that raises
        raise AdapterError(f"--impl {spec!r}: reading adapter.capabilities raised "
                           f"{type(error).__name__}: {error}") from error
    if caps is None and not callable(getattr(adapter, "classify", None)):
        raise AdapterError(f"--impl {spec!r}: {factory_name}() returned a "
                           f"{type(adapter).__name__} ({adapter!r:.80}), not an adapter (an "
                           "object with capabilities, load and classify; see "
                           "conformance.protocol)")
    if not isinstance(caps, Capabilities):
        raise AdapterError(f"--impl {spec!r}: adapter.capabilities must be a "
                           f"conformance.protocol.Capabilities, got {type(caps).__name__}")
    required = ["load", "classify"]
    required += ["distill"] if "distill" in caps.kinds else []
    required += ["stages"] if caps.stages else []
    required += ["anytime"] if caps.anytime else []
    required += ["preprocess"] if caps.preprocessing else []
    missing = [name for name in required if not callable(getattr(adapter, name, None))]
    if missing:
        raise AdapterError(f"--impl {spec!r}: adapter lacks method(s) {missing} "
                           "required by its capabilities")
    return adapter
