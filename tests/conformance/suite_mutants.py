"""Deliberately wrong or limited ports: the suite must catch each one (or skip, never pass).

Each factory wraps the PyTorch float32 adapter:

* ``stateful``: upstream's mask cache — every call overwrites the handle's granularities
  with the filtered list of that call (the STATE-1 divergence of the published code).
* ``ignores_width``: drops ``mat_dim`` (a port that never slices the FFN, MAT-1).
* ``shifted_logits``: adds 0.01 to every logit (a wrong output bias, HEAD-1 only: softmax,
  exit decisions, argmax and every stage are unchanged).
* ``rejects_numpy_tokens``: raises on a NumPy integer ``num_tokens``, as upstream's flex
  attention does (ARG-1).
* ``minimal``: declares few capabilities; everything beyond them must be skipped.
* ``rope_halves``: RoPE rotates channel i with i + hd/2 instead of adjacent pairs (ROPE-1).
* ``full_keeps_mask``: ``attn_layer="full"`` still applies the block mask (MASK-1).
* ``two_call_leak``: a state leak that needs exactly two earlier calls: after two calls
  with an explicit ``num_tokens`` below ``max_latent_tokens``, every later call on the
  handle adds 0.01 to its logits (STATE-1; the minimal repro has two calls).
* ``ln_eps``: every LayerNorm with eps 1e-5 (PyTorch's default) instead of 1e-6 (NUM-1).
* ``tanh_gelu``: the tanh approximation of GELU (NUM-2).
* ``no_long_scaling``: RoPE positions never interpolated above ``max_latent_tokens`` (ROPE-3).
* ``plain_bicubic``: ``pos_embed`` resized with PyTorch's default bicubic (a = -0.75, no
  antialias) instead of the antialiased one (PATCH-2).
* ``width_wrong_axis``: the Matryoshka width keeps the first h *output* channels of each
  block FFN (fc2 rows) instead of its first h hidden units (MAT-1).

``MUTANTS`` is the zoo: each typical porting fault with the clause the report must charge
and the goldens that must catch it (``test_mutant_zoo.py``; the table in
``conformance/README.md`` is checked against it).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from conformance.adapters.torch_port import TorchAdapter


@dataclass
class _CachedModel:
    model: Any
    grans: list[int]
    max_latent_tokens: int


class StatefulGrans(TorchAdapter):
    def load(self, checkpoint_dir: str) -> _CachedModel:
        config = json.loads((Path(checkpoint_dir) / "config.json").read_text())
        return _CachedModel(super().load(checkpoint_dir), list(config["mask_token_grans"]),
                            config["max_latent_tokens"])

    def _remember(self, handle: _CachedModel, call_args: dict) -> dict:
        N = call_args.get("num_tokens", handle.max_latent_tokens)
        kept = [g for g in call_args.get("token_grans", handle.grans) if g <= N]
        handle.grans = kept + [N] if not kept or kept[-1] < N else kept
        return {**call_args, "token_grans": handle.grans}

    def classify(self, handle: _CachedModel, images, **call_args):
        return super().classify(handle.model, images, **self._remember(handle, call_args))

    def distill(self, handle: _CachedModel, images, **call_args):
        return super().distill(handle.model, images, **self._remember(handle, call_args))

    def stages(self, handle: _CachedModel, images, **call_args):
        return super().stages(handle.model, images, **self._remember(handle, call_args))


class IgnoresWidth(TorchAdapter):
    def _forward(self, model, images, call_args, stages):
        return super()._forward(model, images, {k: v for k, v in call_args.items()
                                                if k != "mat_dim"}, stages)


class ShiftedLogits(TorchAdapter):
    def classify(self, model, images, **call_args):
        out = super().classify(model, images, **call_args)
        return {**out, "logits": out["logits"] + 0.01}

    def distill(self, model, images, **call_args):
        out = super().distill(model, images, **call_args)
        return {**out, "logits": out["logits"] + 0.01}


class RejectsNumpyTokens(TorchAdapter):
    def _forward(self, model, images, call_args, stages):
        if isinstance(call_args.get("num_tokens"), np.integer):
            raise TypeError("cannot extract sympy expressions from "
                            f"{call_args['num_tokens']} {type(call_args['num_tokens'])}")
        return super()._forward(model, images, call_args, stages)


def shifted_logits() -> ShiftedLogits:
    return ShiftedLogits("float32")


def rejects_numpy_tokens() -> RejectsNumpyTokens:
    return RejectsNumpyTokens("float32")


def stateful() -> StatefulGrans:
    return StatefulGrans("float32")


def ignores_width() -> IgnoresWidth:
    return IgnoresWidth("float32")


def minimal() -> TorchAdapter:
    adapter = TorchAdapter("float32")
    adapter.capabilities = replace(
        adapter.capabilities, name="minimal", kinds=frozenset({"classification"}),
        per_sample_width=False, exit_policies=frozenset(), attn_layers=frozenset({"full"}),
        resized_inputs=False, argument_validation=False, stages=False, anytime=False)
    return adapter


class Patched(TorchAdapter):
    """The PyTorch port with attributes ``("module[:Class]", name) -> replacement`` swapped
    in for the duration of every call: one typical porting fault each."""

    def __init__(self, dtype: str, patches: dict[tuple[str, str], Callable]) -> None:
        super().__init__(dtype)
        self.patches = patches

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        import importlib

        saved = {}
        for (where, name), replacement in self.patches.items():
            module, _, attribute = where.partition(":")  # "package.module[:Class]"
            target = importlib.import_module(module)
            target = getattr(target, attribute) if attribute else target
            saved[(target, name)] = getattr(target, name)
            setattr(target, name, replacement)
        try:
            yield
        finally:
            for (target, name), original in saved.items():
                setattr(target, name, original)

    def _forward(self, model, images, call_args, stages):
        with self._patched():
            return super()._forward(model, images, call_args, stages)

    def anytime(self, model, images, **call_args):
        with self._patched():
            return super().anytime(model, images, **call_args)


def _rope_on_halves(x, cos, sin):
    """ROPE-1 fault: rotates channel i with channel i + hd/2 (the "rotate_half" layout)."""
    import torch

    first, second = x.to(cos.dtype).chunk(2, dim=-1)  # (B, H, N, hd/2) each
    rotated = torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return rotated.to(x.dtype)  # (B, H, N, hd)


def _plan_keeping_mask(attn_layer, mask_type, num_tokens, token_grans):
    """MASK-1 fault: the "full" attention layer still applies the configured token mask."""
    from adaperceiver.masks import attention_plan

    return attention_plan("flex", mask_type, num_tokens, token_grans)


def rope_halves() -> Patched:
    return Patched("float32", {("adaperceiver.model", "apply_rope"): _rope_on_halves,
                               ("adaperceiver.layers", "apply_rope"): _rope_on_halves})


def full_keeps_mask() -> Patched:
    return Patched("float32", {("adaperceiver.model", "attention_plan"): _plan_keeping_mask})


@dataclass
class _CountingModel:
    model: Any
    max_latent_tokens: int
    small_calls: int = 0


class TwoCallLeak(TorchAdapter):
    def load(self, checkpoint_dir: str) -> _CountingModel:
        config = json.loads((Path(checkpoint_dir) / "config.json").read_text())
        return _CountingModel(super().load(checkpoint_dir), config["max_latent_tokens"])

    def _call(self, method, handle: _CountingModel, images, call_args):
        out = method(handle.model, images, **call_args)
        if handle.small_calls >= 2 and "logits" in out:
            out = {**out, "logits": out["logits"] + 0.01}
        if call_args.get("num_tokens", handle.max_latent_tokens) < handle.max_latent_tokens:
            handle.small_calls += 1
        return out

    def classify(self, handle, images, **call_args):
        return self._call(super().classify, handle, images, call_args)

    def distill(self, handle, images, **call_args):
        return self._call(super().distill, handle, images, call_args)

    def stages(self, handle, images, **call_args):
        return super().stages(handle.model, images, **call_args)

    def anytime(self, handle, images, **call_args):
        return super().anytime(handle.model, images, **call_args)


def two_call_leak() -> TwoCallLeak:
    return TwoCallLeak("float32")


class LayerNormEps(TorchAdapter):
    """NUM-1 fault: every LayerNorm of the loaded model uses eps 1e-5 (``nn.LayerNorm``'s
    default) instead of 1e-6."""

    def load(self, checkpoint_dir: str) -> Any:
        model = super().load(checkpoint_dir)
        for module in model.modules():
            if isinstance(module, self._torch.nn.LayerNorm):
                module.eps = 1e-5
        return model


def _tanh_gelu(t):
    """NUM-2 fault: GELU's tanh approximation."""
    import torch.nn.functional as F

    return F.gelu(t, approximate="tanh")


def _unscaled_rope_tables(num_tokens, head_dim, theta, max_latent_tokens, device):
    """ROPE-3 fault: positions 0..N-1 are never interpolated, also when N > L."""
    from adaperceiver.rope import rope_tables

    return rope_tables(num_tokens, head_dim, theta, max(max_latent_tokens, num_tokens), device)


def _plain_bicubic_position_embedding(self, gh, gw):
    """PATCH-2 fault: ``interpolate(mode="bicubic")`` with its defaults (a = -0.75, no
    antialiasing) for a grid other than the trained one."""
    import torch.nn.functional as F

    pos = self.pos_embed
    if (gh, gw) == (self.grid, self.grid):
        return pos
    D = pos.shape[-1]
    square = pos.reshape(1, self.grid, self.grid, D).permute(0, 3, 1, 2)  # (1, D, s, s)
    resized = F.interpolate(square, size=(gh, gw), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(1, gh * gw, D)  # (1, D, gh, gw) -> (1, M, D)


def _ffn_width_on_outputs(self, x, hidden=None):
    """MAT-1 fault: the full FFN, then only its first h output channels (fc2 rows [:h]) kept
    and the rest zeroed, instead of the first h hidden units (fc1 rows, fc2 columns)."""
    import torch.nn.functional as F

    out = F.linear(F.gelu(F.linear(x, self.fc1.weight, self.fc1.bias)), self.fc2.weight,
                   self.fc2.bias)  # (..., D)
    if hidden is None or hidden >= out.shape[-1]:
        return out
    import torch

    return out * (torch.arange(out.shape[-1]) < hidden).to(out.dtype)  # (D,) 1 then 0


def ln_eps() -> LayerNormEps:
    return LayerNormEps("float32")


def tanh_gelu() -> Patched:
    return Patched("float32", {("adaperceiver.layers", "gelu_"): _tanh_gelu})


def no_long_scaling() -> Patched:
    return Patched("float32", {("adaperceiver.model", "rope_tables"): _unscaled_rope_tables})


def plain_bicubic() -> Patched:
    return Patched("float32", {("adaperceiver.model:PatchEmbed", "position_embedding"):
                               _plain_bicubic_position_embedding})


def width_wrong_axis() -> Patched:
    return Patched("float32", {("adaperceiver.layers:Mlp", "forward"): _ffn_width_on_outputs})


@dataclass(frozen=True)
class Mutant:
    """One typical porting fault of the zoo.

    ``fault`` and ``clause`` are a row of the table in ``conformance/README.md`` (the clause
    the report charges: the first clause of every failure's first line); ``goldens`` are the
    golden cases that catch it, run in this order on one shared handle per checkpoint
    (empty: no golden can, e.g. a fault of argument handling); ``subset`` selects the
    suite's tests that catch it whatever the order seed (``-k``), for the runs of the real
    command.
    """

    fault: str
    clause: str
    goldens: tuple[str, ...]
    subset: str


MUTANTS: dict[str, Mutant] = {
    "stateful": Mutant("mask cache kept on the handle (upstream)", "STATE-1",
                       ("cls-grans-custom", "cls-default"), "stateless"),
    "two_call_leak": Mutant("state that needs two particular earlier calls", "STATE-1",
                            ("cls-gran-2", "cls-gran-4", "cls-default"),
                            "test_golden and (cls-gran or cls-offgrid)"),
    "ln_eps": Mutant("LayerNorm eps 1e-5 instead of 1e-6", "NUM-1", ("constants-default",),
                     "test_golden and constants-default"),
    "tanh_gelu": Mutant("GELU's tanh approximation", "NUM-2", ("constants-default",),
                        "test_golden and constants-default"),
    "rope_halves": Mutant("RoPE rotating halves (i, i + hd/2) instead of adjacent pairs",
                          "ROPE-1", ("cls-default", "constants-default"),
                          "test_golden and (cls-default or constants-default)"),
    "no_long_scaling": Mutant("no long-sequence scaling (positions not interpolated above "
                              "max_latent_tokens)", "ROPE-3",
                              ("cls-ntk-24", "constants-beyond-long"),
                              "test_golden and (cls-ntk-24 or constants-beyond-long)"),
    "full_keeps_mask": Mutant("\"full\" attention layer still applying the block mask",
                              "MASK-1", ("cls-full-default",), "test_golden and cls-full-default"),
    "plain_bicubic": Mutant("pos_embed resized with plain bicubic (a = -0.75, no antialias)",
                            "PATCH-2", ("cls-image-up", "constants-image-down"),
                            "test_golden and (cls-image-up or constants-image-down)"),
    "width_wrong_axis": Mutant("width slicing the wrong axis (first h FFN outputs instead of "
                               "hidden units)", "MAT-1", ("cls-width-4", "constants-width-3"),
                               "test_golden and (cls-width-4 or constants-width-3)"),
    "ignores_width": Mutant("`mat_dim` ignored", "MAT-1", ("cls-width-4",),
                            "test_golden and cls-width-4"),
    "shifted_logits": Mutant("wrong output bias", "HEAD-1", ("cls-default",),
                             "test_golden and cls-default"),
    "rejects_numpy_tokens": Mutant("NumPy integer `num_tokens` rejected", "ARG-1", (),
                                   "test_numpy_integers_accepted"),
}
