"""Deliberately wrong or limited ports: the suite must catch each one (or skip, never pass).

Each factory wraps the PyTorch float32 adapter:

* ``stateful``: upstream's mask cache — every call overwrites the handle's granularities
  with the filtered list of that call (the STATE-1 divergence of the published code).
* ``ignores_width``: drops ``mat_dim`` (a port that never slices the FFN, MAT-1).
* ``minimal``: declares few capabilities; everything beyond them must be skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
