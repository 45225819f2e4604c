"""``adaperceiver.layers.linear``: oneDNN for float32 CPU inference, ``F.linear`` otherwise.

Expected values come from float64 matmuls or the NumPy oracle, never from either route.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torch_helpers import checkpoint, images, rel_err, tiny_config

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.layers import linear

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="this torch has no oneDNN")
ONEDNN, MKL = "mkldnn::_linear_pointwise", "aten::linear"
BUDGET = dict(num_tokens=12, mat_dim=5, depth=2)  # masked, narrowed (fc2 column slice), shallower


def linear_ops(call) -> set[str]:
    """The linear kernels (oneDNN's or aten's) one call runs, from the torch profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    return {event.key for event in prof.key_averages()} & {ONEDNN, MKL}


@pytest.mark.parametrize("shape", [(1, 1, 7), (3, 5, 7), (7,), (2, 7)])
@pytest.mark.parametrize("columns", [None, 4])
def test_linear_matches_float64_matmul(shape, columns):
    """y = x W^T + b within float32 rounding, for batch 1, odd and 1-D/2-D inputs and a
    Matryoshka column slice of the weight (non-contiguous, as fc2's), on the oneDNN route."""
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(9, 7, generator=g), torch.randn(9, generator=g)
    if columns is not None:
        weight, shape = weight[:, :columns], (*shape[:-1], columns)
    x = torch.randn(shape, generator=g)
    expected = x.double() @ weight.double().T + bias.double()
    with torch.inference_mode():
        assert linear_ops(lambda: linear(x, weight, bias)) == {ONEDNN}
        got = linear(x, weight, bias)
        assert linear(x, weight).shape == expected.shape
    assert got.dtype == torch.float32
    assert rel_err(got, expected.numpy()) <= 1e-6


@pytest.mark.parametrize("x_shape, w_shape", [((2, 3, 0), (4, 0)), ((0, 5), (4, 5))])
def test_empty_products(x_shape, w_shape):
    """A zero FFN width (no kept columns) or no rows gives x W^T + b = b or an empty
    result, as F.linear does, instead of oneDNN's error."""
    x, weight, bias = torch.ones(x_shape), torch.ones(w_shape), torch.arange(4.0)
    with torch.inference_mode():
        got = linear(x, weight, bias)
    assert got.shape == (*x_shape[:-1], 4)
    assert torch.equal(got, bias.expand_as(got))


def test_inference_takes_onednn_and_matches_the_oracle():
    """TOL-1 (float32), MAT-1: under inference_mode every linear of the model runs oneDNN
    (none runs aten's), and the logits at a narrowed budget are the oracle's."""
    config = tiny_config()
    with checkpoint(config, seed=3) as (path, weights):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    x = torch.from_numpy(images(2, config)).float()
    with torch.inference_mode():
        assert linear_ops(lambda: model(x, **BUDGET)) == {ONEDNN}
        got = model(x, **BUDGET).logits
    assert rel_err(got, rn.classify(weights, config, x.numpy(), **BUDGET)) <= 1e-4


def test_other_cases_keep_f_linear():
    """Grad enabled with parameters that require grad, CPU autocast (bfloat16 linears) and
    a float64 model run ``F.linear``, never oneDNN; grad disabled without inference_mode
    takes oneDNN."""
    model = ClassificationAdaPerceiver(**tiny_config()).eval()
    x = torch.randn(2, 3, 16, 16)
    assert linear_ops(lambda: model(x)) == {MKL}
    with torch.no_grad():
        assert linear_ops(lambda: model(x)) == {ONEDNN}
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        assert linear_ops(lambda: model(x)) == {MKL}
        assert model(x).logits.dtype == torch.bfloat16
    with torch.inference_mode():
        assert linear_ops(lambda: model.double()(x.double())) == {MKL}


def test_dispatch_modes_see_aten_linear():
    """Under a dispatch mode that reads aten ops (FlopCounterMode) the product stays
    ``F.linear``, so its 2 x rows x in x out FLOPs are counted."""
    x, weight = torch.ones(6, 5), torch.ones(4, 5)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        linear(x, weight, torch.zeros(4))
    assert counter.get_total_flops() == 2 * 6 * 5 * 4


def test_weight_edits_in_place_change_the_output():
    """STATE-1: nothing is cached from the weights: after in-place edits of fc1, of fc2's
    kept columns and of the head the output equals that of a fresh model built from the
    edited weights."""
    config = tiny_config()
    with checkpoint(config, seed=4) as (path, _):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    x = torch.from_numpy(images(2, config)).float()
    with torch.inference_mode():
        before = model(x, **BUDGET).logits
    with torch.no_grad():
        model.blocks[0].ffn.fc1.weight.mul_(-2.0)
        model.blocks[1].ffn.fc2.weight[:, :3].add_(0.5)
        model.output_adapter.ffn.weight.mul_(3.0)
    fresh = ClassificationAdaPerceiver(**config).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after, expected = model(x, **BUDGET).logits, fresh(x, **BUDGET).logits
    assert rel_err(after, expected.double().numpy()) <= 1e-6
    assert rel_err(after, before.double().numpy()) > 1e-2


def test_training_gradients_flow():
    """With grad enabled the linears stay differentiable: every weight of the used blocks
    gets a finite, non-zero gradient, and the forward equals the oneDNN inference output."""
    model = ClassificationAdaPerceiver(**tiny_config()).train()
    x = torch.randn(2, 3, 16, 16)
    logits = model(x, **BUDGET).logits
    logits.square().sum().backward()
    for name in ("attn.q", "attn.proj", "ffn.fc1", "ffn.fc2"):
        grad = model.blocks[1].get_submodule(name).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0, name
    with torch.inference_mode():
        reference = model(x, **BUDGET).logits
    assert rel_err(logits, reference.double().numpy()) <= 1e-5
