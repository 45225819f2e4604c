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
``ToleranceOverride`` entries, each carrying a reason that the report shows.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

KINDS = ("classification", "distill")
EXIT_POLICIES = ("batch_mean", "per_sample")
ATTN_LAYERS = ("flex", "full")
BLOCK_MASKS = ("block", "causal", "none")


@dataclass(frozen=True)
class ToleranceOverride:
    """Use ``rtol`` for every test whose id starts with ``test_prefix`` (TOL-1).

    ``reason`` is mandatory and is printed in the report next to the results it
    affected, e.g. ``ToleranceOverride("test_goldens.py::test_golden[cls-ntk",
    3e-4, "RoPE tables computed in float16 on the NPU")``.
    """

    test_prefix: str
    rtol: float
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError(f"ToleranceOverride for {self.test_prefix!r} needs a reason")
        if not self.rtol > 0:
            raise ValueError(f"ToleranceOverride rtol must be > 0, got {self.rtol!r}")


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
    versions: Mapping[str, str] = field(default_factory=dict)
    tolerance_overrides: tuple[ToleranceOverride, ...] = ()

    def __post_init__(self) -> None:
        for name, value, allowed in (("kinds", self.kinds, KINDS),
                                     ("exit_policies", self.exit_policies, EXIT_POLICIES),
                                     ("attn_layers", self.attn_layers, ATTN_LAYERS),
                                     ("block_masks", self.block_masks, BLOCK_MASKS)):
            unknown = set(value) - set(allowed)
            if unknown:
                raise ValueError(f"Capabilities.{name} has unknown values {sorted(unknown)}; "
                                 f"allowed {list(allowed)}")

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


def load_adapter(spec: str) -> PortAdapter:
    """Build the adapter named by ``"package.module:factory"`` and check its shape.

    Raises ``ValueError`` naming the problem (bad spec, missing attribute, a
    declared capability without its method).
    """
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"--impl must look like 'package.module:factory', got {spec!r}")
    module = importlib.import_module(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"--impl {spec!r}: {module_name} has no callable {factory_name!r}")
    adapter = factory()
    caps = getattr(adapter, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise ValueError(f"--impl {spec!r}: adapter.capabilities must be a "
                         f"conformance.protocol.Capabilities, got {type(caps).__name__}")
    required = ["load", "classify"]
    required += ["distill"] if "distill" in caps.kinds else []
    required += ["stages"] if caps.stages else []
    required += ["anytime"] if caps.anytime else []
    missing = [name for name in required if not callable(getattr(adapter, name, None))]
    if missing:
        raise ValueError(f"--impl {spec!r}: adapter lacks method(s) {missing} "
                         "required by its capabilities")
    return adapter
