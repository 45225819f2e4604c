"""Regression tests for the forward-time findings F8, N2, N3 and the N6 message mismatch
(LIM-2, LIM-3, LIM-4, ARG-5, ARG-7, ARG-8): the same call to the PyTorch model and to the
oracle fails with the same documented error, quickly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from robust_helpers import make_checkpoint

import adaperceiver.limits
import reference_numpy as rn
import reference_numpy.limits
from adaperceiver import ClassificationAdaPerceiver

CONFIG = rn.tiny_config()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(torch model, oracle weights) of one tiny checkpoint."""
    directory = make_checkpoint(tmp_path_factory.mktemp("forward") / "ck")
    _, weights = rn.load_checkpoint(directory)
    return ClassificationAdaPerceiver.from_pretrained(directory), weights


def images(batch: int = 1, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(0).standard_normal((batch, 3, 16, 16))


def both_errors(pair, x: np.ndarray, **kwargs) -> tuple[BaseException, BaseException]:
    """The exceptions the two implementations raise for one call (each must raise)."""
    model, weights = pair
    raised = []
    for call in (lambda: model(torch.from_numpy(x), **kwargs),
                 lambda: rn.classify(weights, CONFIG, x, **kwargs)):
        with pytest.raises((TypeError, ValueError)) as err:
            call()
        raised.append(err.value)
    return raised[0], raised[1]


@pytest.mark.parametrize("num_tokens", [65537, 10**6, 10**30, np.uint64(2**63)],
                         ids=["65537", "1e6", "1e30", "uint64-2e63"])
def test_f8_num_tokens_above_the_limit(pair, num_tokens):
    """F8, LIM-2, ARG-8: OverflowError, RuntimeError, MemoryError or a two-minute run used
    to follow; now one ValueError naming num_tokens, word for word in both."""
    ours, oracle = both_errors(pair, images(), num_tokens=num_tokens)
    assert type(ours) is type(oracle) is ValueError
    assert str(ours) == str(oracle)
    assert str(ours).startswith("num_tokens must be an int in 1..65536")


def test_f8_memory_estimate_beyond_the_machine_is_a_value_error(pair, monkeypatch):
    """F8, LIM-3: a call whose estimate exceeds the device memory is refused before any
    allocation, naming the shape, num_tokens and the estimate."""
    model, weights = pair
    monkeypatch.setattr(reference_numpy.limits, "machine_memory", lambda: 2**16)
    monkeypatch.setattr(adaperceiver.limits, "device_memory", lambda device: 2**16)
    x = images(batch=4)
    with pytest.raises(ValueError, match=r"images of shape \(4, 3, 16, 16\) with num_tokens=64 "
                                         r"need an estimated .* GiB in the float64 oracle"):
        rn.classify(weights, CONFIG, x, num_tokens=64)
    with pytest.raises(ValueError, match=r"x of shape \(4, 3, 16, 16\) with num_tokens=64 "
                                         r"needs an estimated .* GiB"):
        model(torch.from_numpy(x), num_tokens=64)


def test_lim3_estimates_grow_as_documented():
    """LIM-3: the oracle's estimate is quadratic in N, the PyTorch model's linear."""
    shape = (1, 3, 16, 16)
    oracle = [rn.limits.estimate_bytes(CONFIG, shape, n) for n in (1000, 2000)]
    ours = [adaperceiver.limits.estimate_bytes(CONFIG, shape, n, 4) for n in (1000, 2000)]
    assert 3.9 < oracle[1] / oracle[0] < 4.1
    assert 1.9 < ours[1] / ours[0] < 2.1
    # the oracle at N = 65536 needs more than 100 GiB (a MemoryError before LIM-3)
    assert rn.limits.estimate_bytes(CONFIG, shape, 65536) > 100 * 2**30


@pytest.mark.parametrize("x", [images(scale=1e19), np.full((1, 3, 16, 16), 5e18),
                               np.full((1, 3, 16, 16), 1e300), images(scale=1e9)],
                         ids=["randn-1e19", "const-5e18", "f64-1e300", "randn-1e9"])
def test_n2_input_magnitude_beyond_the_limit(pair, x):
    """N2, LIM-4, ARG-8: inputs whose float32 LayerNorm overflows gave NaN or finite but
    different logits (argmax 3 vs 9); now the same ValueError (after the argument name)."""
    ours, oracle = both_errors(pair, x)
    assert type(ours) is type(oracle) is ValueError
    assert str(ours).startswith("x must be") and str(oracle).startswith("images must be")
    assert str(ours).split(", got ", 1)[1] == str(oracle).split(", got ", 1)[1]
    assert "the largest allowed is 1e+08" in str(ours)


def test_n2_inputs_at_the_limit_agree(pair):
    """LIM-4: |x| = 1e8 is allowed, and both implementations agree on it (TOL-1 spirit:
    a relative comparison, never ==)."""
    model, weights = pair
    x = np.sign(images()) * 1e8
    with torch.inference_mode():
        ours = model(torch.from_numpy(x).double()).logits.numpy()
    model.float()
    reference = rn.classify(weights, CONFIG, x)
    assert np.abs(ours - reference).max() <= 1e-6 * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("make", [lambda: torch.zeros(1, 3, 16, 16, device="meta"),
                                  lambda: torch.zeros(1, 3, 16, 16).to_sparse()],
                         ids=["meta", "sparse"])
def test_n3_tensors_without_dense_data_are_type_errors(pair, make):
    """N3, LIM-4, ARG-7: meta and sparse tensors used to raise RuntimeError or
    NotImplementedError from deep inside; now a TypeError naming x."""
    model, _ = pair
    with pytest.raises(TypeError, match=r"^x must be a dense tensor with data"):
        model(make())


def test_n6_two_dimensional_array_token_grans_same_message(pair):
    """N6, ARG-5, ARG-8: the oracle's message lacked the "(ndarray)" type suffix."""
    ours, oracle = both_errors(pair, images(), token_grans=np.array([[2, 4]]))
    assert type(ours) is type(oracle) is TypeError
    assert str(ours) == str(oracle) and str(ours).endswith("(ndarray)")
