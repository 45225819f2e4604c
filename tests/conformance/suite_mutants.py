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
    """The PyTorch port with module attributes ``(module, name) -> replacement`` swapped in
    for the duration of every call: one typical porting fault each."""

    def __init__(self, dtype: str, patches: dict[tuple[str, str], Callable]) -> None:
        super().__init__(dtype)
        self.patches = patches

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        import importlib

        saved = {}
        for (module, name), replacement in self.patches.items():
            target = importlib.import_module(module)
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
