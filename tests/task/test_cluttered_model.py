"""The bundled cluttered-digits model: published layout and size, both implementations agree
on real test canvases, and its accuracy measured here at the full and the cheapest budget
lies within the 95 % interval of what ``train`` recorded on the machine that trained it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import reference_numpy as oracle
from adaperceiver import ClassificationAdaPerceiver, cluttered
from adaperceiver.digits import CLUTTERED_MODEL
from adaperceiver.stats import wilson_interval

META = json.loads((CLUTTERED_MODEL / "adaperceiver.json").read_text())


def _budget(name: str) -> dict[str, int]:
    """"N=2 depth=1 width=32" -> the call's keyword arguments."""
    return dict(zip(("num_tokens", "depth", "mat_dim"),
                    (int(part.split("=")[1]) for part in name.split()), strict=True))


@pytest.fixture(scope="module")
def model():
    return ClassificationAdaPerceiver.from_pretrained(CLUTTERED_MODEL).eval()


@pytest.fixture(scope="module")
def test_set():
    return cluttered.test_set()


def test_layout_size_and_metadata():
    """config.json holds exactly the constructor keys (CKPT-2), the weights are <= 3 MB, and
    the metadata names the labels, the PRE-7 preprocessing, the test set and how it was
    trained (command, seed, threads, torch version)."""
    config = json.loads((CLUTTERED_MODEL / "config.json").read_text())
    published = oracle.default_config(embed_dim=8, num_heads=2, depth=1, mask_token_grans=[1],
                                      mat_dims=[8])
    assert set(config) == set(published)
    assert config["img_size"] == cluttered.CANVAS
    assert (CLUTTERED_MODEL / "model.safetensors").stat().st_size <= 3_000_000
    assert META["labels"] == [str(d) for d in range(10)]
    assert META["preprocessing"] == {"kind": "digit-canvas", "canvas": cluttered.CANVAS,
                                     "scale": cluttered.SCALE}
    training = META["training"]
    assert training["command"].startswith("adaperceiver train --out ")
    assert {"seed", "threads", "torch", "steps", "machine"} <= set(training)
    assert META["test_accuracy"]["num_images"] == cluttered.TEST_CANVASES


def test_both_implementations_agree_on_test_canvases(model, test_set):
    """The oracle (float64) and the torch model (float32) on 24 real test canvases at two
    budgets: logits within TOL-1's float32 scale, the same predictions."""
    config, weights = oracle.load_checkpoint(CLUTTERED_MODEL)
    x = test_set[0][:24]
    for budget in ({}, dict(num_tokens=4, depth=2, mat_dim=32)):
        expected = oracle.classify(weights, config, x.astype(np.float64), **budget)
        with torch.inference_mode():
            got = model(torch.from_numpy(x), **budget).logits.double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        assert (got.argmax(-1) == expected.argmax(-1)).all()


@pytest.mark.parametrize("which", ["full", "cheapest"])
def test_accuracy_lies_within_the_recorded_interval(model, test_set, which):
    """Accuracy on all 3,590 test canvases at the recorded full and cheapest budgets, measured
    here, is inside the 95 % Wilson interval of the recorded count (another CPU may flip a
    few borderline images, never many)."""
    acc = META["test_accuracy"]
    name = acc[which]
    budget = _budget(name)
    x, y = (torch.from_numpy(a) for a in test_set)
    with torch.inference_mode():
        predicted = torch.cat([model(x[i:i + 512], **budget).logits[:, 0].argmax(-1)
                               for i in range(0, len(x), 512)])
    correct = int((predicted == y).sum())
    low, high = wilson_interval(acc["correct"][name], acc["num_images"])
    assert low <= correct / len(y) <= high, (name, correct, acc["correct"][name])


def test_the_budgets_differ():
    """What the bundled task is for: the recorded cheapest budget is at least 10 points below
    the full one (the issue's target; docs/model-cards.md has the spread over seeds), beyond
    both 95 % intervals."""
    acc = META["test_accuracy"]
    n = acc["num_images"]
    full, cheap = acc["correct"][acc["full"]], acc["correct"][acc["cheapest"]]
    assert full - cheap >= 0.10 * n
    assert wilson_interval(cheap, n)[1] < wilson_interval(full, n)[0]



def test_each_axis_moves_accuracy_beyond_the_noise():
    """For each axis (tokens, depth, width), going from its smallest to its largest value
    with the other two at their smallest raises the recorded accuracy beyond both 95 %
    intervals; for tokens and depth also with the other two at full (the demo prints both
    regimes)."""
    acc = META["test_accuracy"]
    n, counts = acc["num_images"], acc["correct"]
    grid = {tuple(_budget(name).values()): k for name, k in counts.items()
            if name.startswith("N=")}
    values = [sorted({key[i] for key in grid}) for i in range(3)]
    for axis in range(3):
        regimes = ("smallest", "full") if axis < 2 else ("smallest",)
        for regime in regimes:
            held = [v[0] if regime == "smallest" else v[-1] for v in values]
            low, high = list(held), list(held)
            low[axis], high[axis] = values[axis][0], values[axis][-1]
            small, large = grid[tuple(low)], grid[tuple(high)]
            assert wilson_interval(small, n)[1] < wilson_interval(large, n)[0], (
                axis, regime, small, large)


def test_the_model_card_states_the_recorded_numbers():
    """Every accuracy in docs/model-cards.md's table of the bundled model is the recorded
    count / num_images, to the two decimals shown."""
    card = (Path(__file__).resolve().parents[2] / "docs" / "model-cards.md").read_text()
    section = card.split("### Accuracy at each budget")[1].split("###")[0]
    acc = META["test_accuracy"]
    rows = re.findall(r"^\| (N=\d+ depth=\d+ width=\d+)[^|]*\| ([\d.]+) % \|", section, re.M)
    assert len(rows) >= 5
    for name, shown in rows:
        assert float(shown) == pytest.approx(100 * acc["correct"][name] / acc["num_images"],
                                             abs=0.006), name
