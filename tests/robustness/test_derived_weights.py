"""Regression tests for the removed derived-weight cache (robustness findings F4, F5).

F4: an in-place edit through ``p.data`` (which changes neither the storage address nor
the version counter) was not seen by a cache of fused/padded weight copies, so later
calls used the old weights. F5: two threads calling one model raced on that cache
(``KeyError`` from its LRU bookkeeping). The expected values come from the NumPy oracle
run on the edited weights, or from the same model called sequentially.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver


def _loaded(seed: int = 3):
    """A tiny model (float32 checkpoint, run in float64) and the oracle's copy of its weights."""
    config = rn.tiny_config()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        rn.save_checkpoint(path, config, rn.random_weights(config, seed=seed))
        _, weights = rn.load_checkpoint(path)
        model = ClassificationAdaPerceiver.from_pretrained(path).double()
    return model, dict(weights), config


def _images(config: dict, B: int = 2) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((B, 3, config["img_size"], config["img_size"]))


def _rel_err(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.numpy() - b).max() / np.abs(b).max())


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
@pytest.mark.parametrize("key, edit, args", [
    ("blocks.0.attn.q.weight", "double", {}),
    ("blocks.0.attn.k.weight", "double", {"num_tokens": 12}),
    ("blocks.0.ffn.fc1.weight", "double", {"mat_dim": 5}),
    ("blocks.1.ffn.fc1.bias", "double", {"mat_dim": [5, 16]}),
    ("read_head.cattn.k.weight", "zero", {}),
    ("read_head.cattn.v.bias", "zero", {}),
])
def test_in_place_data_edits_are_seen_by_the_next_call(mode, key, edit, args):
    """STATE-1 (finding F4): after a first call, editing a parameter in place through
    ``.data`` (no version-counter bump) changes the next call's logits to exactly the
    oracle's logits for the edited weights."""
    model, weights, config = _loaded()
    x = _images(config)
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    with context():
        before = model(torch.from_numpy(x), **args).logits
    param = model.get_parameter(key)
    version = param._version
    if edit == "double":
        param.data.mul_(2)
        weights[key] = weights[key] * 2
    else:
        param.data.zero_()
        weights[key] = np.zeros_like(weights[key])
    assert param._version == version  # the edit is invisible to version counters
    with context():
        after = model(torch.from_numpy(x), **args).logits
    expected = rn.classify(weights, config, x, **args)
    assert _rel_err(after, expected) <= 1e-10
    assert _rel_err(before, expected) > 1e-6  # the edit mattered


def test_threads_calling_one_model_agree_with_sequential_calls():
    """STATE-1 (finding F5): several threads calling one model at once, cycling through FFN
    widths and token counts (the arguments that selected cache entries), never raise and
    every result equals the same call made sequentially."""
    model, _, config = _loaded()
    x = torch.from_numpy(_images(config))
    calls = [{"mat_dim": m, "num_tokens": n} for m in range(1, 17) for n in (8, 12, 16)]
    with torch.inference_mode():
        expected = [model(x, **c).logits for c in calls]
    errors: list[BaseException] = []
    mismatches: list[dict] = []

    def worker(offset: int) -> None:
        try:
            with torch.inference_mode():
                for i in range(len(calls)):
                    j = (i + offset) % len(calls)
                    if not torch.allclose(model(x, **calls[j]).logits, expected[j],
                                          rtol=1e-12, atol=1e-14):
                        mismatches.append(calls[j])
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert not mismatches, mismatches


def _tensors_held(value: object, depth: int = 4) -> set[int]:
    """ids of the tensors reachable from ``value`` through containers and plain objects
    (not through submodules, which are walked separately)."""
    if isinstance(value, torch.Tensor):
        return {id(value)}
    if depth == 0 or isinstance(value, torch.nn.Module):
        return set()
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple, set)):
        items = list(value)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        items = list(vars(value).values())
    else:
        return set()
    return set().union(*(_tensors_held(v, depth - 1) for v in items))


def test_forward_keeps_no_state_between_calls():
    """STATE-1: a call leaves no tensors behind on the modules (no derived-weight copies
    that could go stale): the tensors the modules hold before and after a forward are
    exactly the parameters and buffers."""
    model, _, config = _loaded()

    def held() -> set[int]:
        return set().union(*(_tensors_held(v) for m in model.modules()
                             for v in vars(m).values()))

    owned = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
    assert held() == owned
    with torch.inference_mode():
        model(torch.from_numpy(_images(config)), mat_dim=5, num_tokens=12)
    assert held() == owned
