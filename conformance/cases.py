"""Checkpoint recipes, call-argument cases and capability requirements.

A ``ModelRecipe`` is a tiny config (overrides of ``reference_numpy.default_config``)
plus a weight seed; a ``Case`` is one call on one recipe: images (shape and
seed) and call arguments. The committed goldens (``GOLDEN_CASES``) are built
from these by ``python -m conformance.goldens generate``; the Hypothesis
properties draw ``Case``-shaped data and report it as the repro of a failure.

``missing_capabilities`` turns a config and a call into the list of port
capabilities it needs and the port lacks: the reasons a test is skipped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import Capabilities

# Tiny but complete: embed FFN, LayerScale, non-integer ffn_ratio, four granularities.
_BASE: dict[str, Any] = {
    "embed_dim": 16, "num_heads": 2, "depth": 4, "max_latent_tokens": 16, "ffn_ratio": 2.5,
    "mask_token_grans": [2, 4, 8, 16], "mat_dims": [4, 8, 16], "img_size": 16,
    "patch_size": 4, "num_classes": 10, "use_embed_ffn": True,
}


@dataclass(frozen=True)
class ModelRecipe:
    """A checkpoint: ``default_config(kind, **overrides)`` with ``random_weights(seed=seed)``."""

    name: str
    kind: str
    overrides: Mapping[str, Any]
    seed: int

    def config(self) -> dict[str, Any]:
        from reference_numpy import default_config

        return default_config(self.kind, **self.overrides)

    def write(self, directory: Path) -> Path:
        """Write the checkpoint (float32, published layout CKPT-1..3) into ``directory``."""
        return write_checkpoint(directory, self.config(), self.seed)


MODELS: dict[str, ModelRecipe] = {m.name: m for m in (
    ModelRecipe("cls-flex-block", "classification", {**_BASE, "attn_layer": "flex",
                                                     "block_mask": "block"}, seed=1),
    ModelRecipe("cls-flex-causal", "classification", {
        **_BASE, "attn_layer": "flex", "block_mask": "causal", "use_output_ffn": True,
        "ls_init_values": 0.0, "qkv_bias": False, "depth": 2}, seed=2),
    ModelRecipe("cls-flex-none", "classification", {
        **_BASE, "attn_layer": "flex", "block_mask": "none", "use_embed_ffn": False,
        "ls_init_values": None, "depth": 2}, seed=3),
    ModelRecipe("cls-full", "classification", {**_BASE, "attn_layer": "full",
                                               "block_mask": "block", "depth": 2}, seed=4),
    # Odd sizes: D=12 (3 heads of 4), ffn_ratio 2.57 (F=30), odd grans and widths, 2 channels.
    ModelRecipe("cls-odd", "classification", {
        "embed_dim": 12, "num_heads": 3, "depth": 3, "max_latent_tokens": 12, "ffn_ratio": 2.57,
        "mask_token_grans": [3, 5, 12], "mat_dims": [5, 7, 12], "img_size": 12,
        "patch_size": 4, "in_channels": 2, "num_classes": 7, "use_embed_ffn": True,
        "use_output_ffn": True, "proj_bias": False, "rope_theta": 100}, seed=5),
    ModelRecipe("distill-flex-block", "distill", {**_BASE, "depth": 2,
                                                  "output_feat_dim": 6}, seed=6),
)}


@dataclass(frozen=True)
class TrainedRecipe(ModelRecipe):
    """A checkpoint with real trained weights: the files of ``source`` copied as they are
    (the bundled digits model, ``adaperceiver/data/digits-model``, read by path so the suite
    needs no torch)."""

    source: Path = Path()

    def config(self) -> dict[str, Any]:
        return json.loads((self.source / "config.json").read_text())

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(self.source / name, directory / name)
        return directory


# Scales of the constant-probe checkpoint (``ProbeRecipe``): every input of every LayerNorm
# has a variance near its eps (NUM-1), and FFN pre-activations spread over GELU's curved
# range |x| ~ 1..4, where the tanh approximation differs most from the erf form (NUM-2).
# The head's hidden units sit at x ~ -2.7: there GELU(x) ~ -0.0094 while the tanh form is
# off by 4.7e-4 (its largest error): a few % of the logits.
PROBE_TINY = 1e-3
PROBE_GELU_GAIN = 3.0
PROBE_HEAD_GELU_CENTRE = -2.7
PROBE_HEAD_GAIN = 0.1
# Everything that feeds a LayerNorm's input from outside one: patch projection and
# pos_embed, the latent and output tokens, the cross-attention outputs added to them, the
# LayerScale gammas of the residual branches and the embed FFN's output.
PROBE_TINY_KEYS = ("patch_embed.embed.proj.", "patch_embed.pos_embed", "process_latents.token",
                   "output_latents.token", "read_head.cattn.proj.", "write_head.cattn.proj.",
                   ".ls1.gamma", ".ls2.gamma", "patch_embed.ffn.fc2.")


@dataclass(frozen=True)
class ProbeRecipe(ModelRecipe):
    """A checkpoint in which the spec's numeric constants matter: random weights with
    ``PROBE_TINY_KEYS`` scaled by ``PROBE_TINY`` (activations ~1e-3, so LayerNorm
    variances ~1e-6 = eps, NUM-1) and every other ``fc1.weight`` by ``PROBE_GELU_GAIN``
    (GELU inputs in its curved range, NUM-2); the head's hidden units are centred at
    ``PROBE_HEAD_GELU_CENTRE`` (fc1 weight and fc2 bias x ``PROBE_HEAD_GAIN``, fc1 bias
    shifted), so GELU's tail is a good part of the logits. LayerNorm is scale-invariant but for its
    eps, so the outputs stay O(1)."""

    def write(self, directory: Path) -> Path:
        from reference_numpy import random_weights, save_checkpoint

        config = self.config()
        weights = random_weights(config, seed=self.seed)
        head = "output_adapter.ffn."
        for key in weights:
            if key == head + "fc1.weight":
                weights[key] = weights[key] * PROBE_HEAD_GAIN
            elif key == head + "fc1.bias":
                weights[key] = weights[key] + PROBE_HEAD_GELU_CENTRE
            elif key == head + "fc2.bias":
                weights[key] = weights[key] * PROBE_HEAD_GAIN
            elif any(part in key for part in PROBE_TINY_KEYS):
                weights[key] = weights[key] * PROBE_TINY
            elif key.endswith("fc1.weight"):
                weights[key] = weights[key] * PROBE_GELU_GAIN
        return save_checkpoint(directory, config, weights, dtype="float32")


MODELS["cls-constants"] = ProbeRecipe("cls-constants", "classification", {
    **_BASE, "depth": 2, "max_latent_tokens": 64, "mask_token_grans": [4, 16, 64],
    "use_output_ffn": True, "attn_layer": "flex", "block_mask": "block"}, seed=7)


BUNDLED_DIGITS = Path(__file__).resolve().parents[1] / "adaperceiver" / "data"
MODELS["cls-digits-trained"] = TrainedRecipe("cls-digits-trained", "classification", {},
                                             seed=-1, source=BUNDLED_DIGITS / "digits-model")


@dataclass(frozen=True)
class Case:
    """One call on one model recipe.

    ``image_shape`` is (B, C, H, W); images are ``make_images(image_shape, image_seed)``.
    ``call_args`` uses the Python API names. ``depth_tau`` may be the string
    ``"mid"``: the generator replaces it by a threshold well away from every
    confidence so that float32 ports exit at the same depths (see ``exits``).
    ``clauses`` are the spec ids the case exercises. ``tolerance`` optionally
    loosens TOL-1 for this case: ``{"rtol": {dtype: rtol}, "reason": "..."}``.
    """

    id: str
    model: str
    image_shape: tuple[int, int, int, int]
    call_args: Mapping[str, Any] = field(default_factory=dict)
    clauses: tuple[str, ...] = ()
    image_seed: int = 0
    tolerance: Mapping[str, Any] | None = None
    images: str = "normal"  # or "digits": real test digits of the bundled data (PRE-4)


def make_images(shape: Sequence[int], seed: int) -> np.ndarray:
    """Deterministic float32 images (standard normal) of ``shape`` (B, C, H, W)."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def case_images(case: Case) -> np.ndarray:
    """The images of a case: ``make_images``, or for ``images="digits"`` the first B digits
    of the bundled test split as count / 16 (PRE-4), float32 (B, 1, 8, 8)."""
    if case.images != "digits":
        return make_images(case.image_shape, case.image_seed)
    with np.load(BUNDLED_DIGITS / "digits.npz", allow_pickle=False) as data:
        counts = data["images"][data["test"]][: case.image_shape[0]]
    return (counts[:, None] / 16).astype(np.float32)  # (B, 8, 8) -> (B, 1, 8, 8)


def write_checkpoint(directory: Path, config: Mapping[str, Any], seed: int, *,
                     dtype: str = "float32") -> Path:
    """``reference_numpy.random_weights(config, seed)`` saved as a checkpoint (CKPT-1..4)."""
    from reference_numpy import random_weights, save_checkpoint

    return save_checkpoint(directory, config, random_weights(config, seed=seed), dtype=dtype)


def _cls(id_: str, args: Mapping[str, Any], clauses: Sequence[str], *,
         model: str = "cls-flex-block", shape=(3, 3, 16, 16), seed: int = 0) -> Case:
    return Case(id_, model, tuple(shape), dict(args), tuple(clauses), seed)


def _golden_cases() -> list[Case]:
    core = ("OUT-1", "PATCH-1", "READ-1", "BLOCK-1", "WRITE-1", "HEAD-1")
    cases = [_cls("cls-default", {}, (*core, "LAT-1", "LAT-2", "MASK-2", "MASK-3", "ROPE-1",
                                      "ROPE-2", "ROPE-4", "PATCH-3", "BLOCK-2", "BLOCK-3",
                                      "MAT-4", "DEPTH-1"))]
    cases += [_cls(f"cls-gran-{n}", {"num_tokens": n}, ("ARG-1", "MASK-2", "MASK-3", "ROPE-2"))
              for n in (2, 4, 8, 16)]
    cases += [_cls(f"cls-offgrid-{n}", {"num_tokens": n}, ("MASK-2", "MASK-3"))
              for n in (1, 6, 11)]
    cases += [_cls(f"cls-ntk-{n}", {"num_tokens": n}, ("ROPE-3", "MASK-2"))
              for n in (17, 24, 40)]
    cases += [_cls(f"cls-width-{m}", {"mat_dim": m}, ("MAT-1", "MAT-2", "ARG-2"))
              for m in (4, 8, 16, 7, 1)]
    cases += [_cls("cls-width-per-sample", {"mat_dim": [4, 16, 7]}, ("MAT-1", "MAT-3"))]
    cases += [_cls(f"cls-depth-{d}", {"depth": d}, ("DEPTH-1", "ARG-3")) for d in (1, 2, 4)]
    for policy, clause in (("batch_mean", "EXIT-2"), ("per_sample", "EXIT-3")):
        for name, tau in (("0", 0.0), ("mid", "mid"), ("0.999", 0.999)):
            cases.append(_cls(f"cls-exit-{policy}-{name}",
                              {"depth_tau": tau, "exit_policy": policy},
                              ("EXIT-1", clause, "EXIT-4", "ARG-4", "ARG-6")))
    cases += [
        _cls("cls-grans-custom", {"num_tokens": 12, "token_grans": [3, 8]}, ("MASK-2", "ARG-5")),
        _cls("cls-grans-single", {"num_tokens": 5, "token_grans": [5]}, ("MASK-2", "ARG-5")),
        _cls("cls-grans-beyond", {"num_tokens": 6, "token_grans": [8, 12]}, ("MASK-2", "ARG-5")),
        _cls("cls-combined", {"num_tokens": 11, "mat_dim": 7, "depth": 2, "token_grans": [4, 9]},
             ("MASK-2", "MAT-1", "DEPTH-1")),
        _cls("cls-image-nonsquare", {}, ("PATCH-1", "PATCH-2"), shape=(2, 3, 16, 24)),
        _cls("cls-image-up", {}, ("PATCH-2",), shape=(2, 3, 24, 24)),
        _cls("cls-image-down", {}, ("PATCH-2",), shape=(2, 3, 8, 8)),
        _cls("cls-image-tall-down", {"num_tokens": 6}, ("PATCH-1", "PATCH-2"),
             shape=(2, 3, 12, 8)),
        _cls("cls-batch-1", {"num_tokens": 8}, ("OUT-1",), shape=(1, 3, 16, 16), seed=1),
    ]
    for model, clauses in (("cls-flex-causal", ("MASK-4", "MASK-1", "BLOCK-2", "HEAD-1")),
                           ("cls-flex-none", ("MASK-5", "MASK-1", "PATCH-3")),
                           ("cls-full", ("MASK-1",))):
        cases += [_cls(f"{model}-default", {}, clauses, model=model),
                  _cls(f"{model}-offgrid", {"num_tokens": 11, "mat_dim": 8}, clauses, model=model),
                  _cls(f"{model}-ntk", {"num_tokens": 20}, (*clauses, "ROPE-3"), model=model)]
    odd = {"model": "cls-odd", "shape": (2, 2, 12, 12)}
    cases += [
        _cls("odd-default", {}, ("OUT-1", "HEAD-1", "MASK-3"), **odd),
        _cls("odd-gran-5", {"num_tokens": 5}, ("MASK-2", "MASK-3"), **odd),
        _cls("odd-width-5", {"mat_dim": 5}, ("MAT-1",), **odd),
        _cls("odd-width-per-sample", {"mat_dim": [7, 3]}, ("MAT-1", "MAT-3"), **odd),
        _cls("odd-nonsquare", {"num_tokens": 7}, ("PATCH-2",), model="cls-odd",
             shape=(2, 2, 8, 16)),
        _cls("odd-exit-per_sample-mid", {"depth_tau": "mid", "exit_policy": "per_sample"},
             ("EXIT-1", "EXIT-3", "EXIT-4"), **odd),
        _cls("odd-exit-batch_mean-mid", {"depth_tau": "mid"}, ("EXIT-1", "EXIT-2", "EXIT-4"),
             **odd, seed=1),
    ]
    dist = {"model": "distill-flex-block"}
    cases += [
        _cls("distill-default", {}, ("OUT-1", "DIST-1", "DIST-2", "DIST-3"), **dist),
        _cls("distill-gran-4", {"num_tokens": 4}, ("DIST-2", "MASK-3"), **dist),
        _cls("distill-ntk", {"num_tokens": 24}, ("DIST-2", "ROPE-3"), **dist),
        _cls("distill-width", {"mat_dim": [4, 16, 7]}, ("DIST-3", "MAT-2", "MAT-3"), **dist),
        _cls("distill-depth-1", {"depth": 1}, ("DEPTH-1", "DIST-3"), **dist),
        _cls("distill-nonsquare", {"num_tokens": 6}, ("DIST-1", "PATCH-2"), model=dist["model"],
             shape=(2, 3, 8, 12)),
    ]
    probe = {"model": "cls-constants"}
    cases += [  # every numeric constant matters (ProbeRecipe); measured in test_mutant_zoo.py
        _cls("constants-default", {}, ("NUM-1", "NUM-2", "BLOCK-3", "HEAD-1", "ROPE-1",
                                       "ROPE-2"), **probe),  # positions up to 63
        _cls("constants-gran-16", {"num_tokens": 16}, ("NUM-1", "NUM-2", "MASK-3"), **probe),
        _cls("constants-beyond-long", {"num_tokens": 160}, ("ROPE-3",), **probe),
        _cls("constants-image-up", {"num_tokens": 16}, ("PATCH-2",), **probe,
             shape=(2, 3, 28, 20)),
        _cls("constants-image-down", {"num_tokens": 16}, ("PATCH-2",), **probe,
             shape=(2, 3, 8, 12)),
        _cls("constants-width-3", {"mat_dim": 3, "num_tokens": 16}, ("MAT-1",), **probe),
    ]
    digits = {"model": "cls-digits-trained", "image_shape": (8, 1, 8, 8)}
    cases += [  # real trained weights on real digits
        Case("digits-default", **digits, clauses=("OUT-1", "PRE-4"), images="digits"),
        Case("digits-budget", **digits, call_args={"num_tokens": 8, "mat_dim": 32, "depth": 3},
             clauses=("MASK-3", "MAT-1", "DEPTH-1"), images="digits"),
        Case("digits-exit-per_sample-mid", **digits,
             call_args={"depth_tau": "mid", "exit_policy": "per_sample"},
             clauses=("EXIT-1", "EXIT-3", "EXIT-4"), images="digits"),
    ]
    return cases


GOLDEN_CASES: tuple[Case, ...] = tuple(_golden_cases())


def _anytime_cases() -> list[Case]:
    """Anytime-grid goldens (ANY-1..4): at least one per golden checkpoint, covering the
    one-pass case (flex block / causal, N <= L) and the exact fallback (mask none, full
    attention, N > L), per-sample widths, custom granularities and the distill logits."""
    one_pass, fallback = ("ANY-1", "ANY-3", "MASK-6"), ("ANY-1", "ANY-4")
    return [
        _cls("grid-cls-default", {}, one_pass),
        _cls("grid-cls-combined", {"num_tokens": 11, "mat_dim": [4, 16, 7],
                                   "token_grans": [3, 8]}, (*one_pass, "MAT-3", "MASK-2")),
        _cls("grid-cls-ntk", {"num_tokens": 20}, (*fallback, "ROPE-3")),
        _cls("grid-cls-flex-causal", {"num_tokens": 13}, (*one_pass, "MASK-4"),
             model="cls-flex-causal"),
        _cls("grid-cls-flex-none", {"mat_dim": 8}, (*fallback, "MASK-5"), model="cls-flex-none"),
        _cls("grid-cls-full", {}, (*fallback, "MASK-1"), model="cls-full"),
        _cls("grid-odd", {"mat_dim": [7, 3]}, one_pass, model="cls-odd", shape=(2, 2, 12, 12)),
        _cls("grid-distill", {"num_tokens": 12}, (*one_pass, "ANY-2"),
             model="distill-flex-block"),
        Case("grid-digits", "cls-digits-trained", (8, 1, 8, 8), {"mat_dim": 48}, one_pass,
             images="digits"),
    ]


ANYTIME_CASES: tuple[Case, ...] = tuple(_anytime_cases())


def missing_capabilities(caps: Capabilities, config: Mapping[str, Any],
                         call_args: Mapping[str, Any], image_hw: tuple[int, int]) -> list[str]:
    """Why a port cannot run this call: one reason per missing capability (empty: runnable)."""
    kind = "distill" if "output_feat_dim" in config else "classification"
    reasons = []
    if kind not in caps.kinds:
        reasons.append(f"port does not load {kind} models (capabilities.kinds)")
    if config["attn_layer"] not in caps.attn_layers:
        reasons.append(f"port does not support attn_layer={config['attn_layer']!r} "
                       "(capabilities.attn_layers)")
    if config["attn_layer"] == "flex" and config["block_mask"] not in caps.block_masks:
        reasons.append(f"port does not support block_mask={config['block_mask']!r} "
                       "(capabilities.block_masks)")
    if not isinstance(call_args.get("mat_dim"), (int, type(None))) and not caps.per_sample_width:
        reasons.append("port does not support per-sample mat_dim lists "
                       "(capabilities.per_sample_width)")
    if call_args.get("depth_tau") is not None:
        policy = call_args.get("exit_policy", "batch_mean")
        if policy not in caps.exit_policies:
            reasons.append(f"port does not support confidence exit with exit_policy={policy!r} "
                           "(capabilities.exit_policies)")
    if tuple(image_hw) != (config["img_size"],) * 2 and not caps.resized_inputs:
        reasons.append(f"port does not support images of size {tuple(image_hw)} other than "
                       f"the trained {config['img_size']}x{config['img_size']} "
                       "(capabilities.resized_inputs)")
    return reasons
