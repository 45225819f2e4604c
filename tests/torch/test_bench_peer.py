"""The benchmark's peer and measuring helpers (``adaperceiver.bench.cli``, ``bench.peer``).

The peer is a speed yardstick: it must compute the same model (with the unmasked
"full" attention layer, as the official code's fastest path does), or the speed
comparison would be meaningless. Expected values come from the NumPy oracle.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import torch
from torch_helpers import checkpoint, images, rel_err, tiny_config

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.bench import timing
from adaperceiver.bench.cli import HEADER, bench_config, bench_exit, profile_call
from adaperceiver.bench.peer import PeerAdaPerceiver


def test_peer_computes_the_full_attention_model():
    """MASK-1, ATTN-1, ROPE-1, MAT-1: the peer loaded with the model's state dict gives the
    oracle's logits for attn_layer "full" (unmasked) at several budgets, in float64."""
    config = tiny_config(attn_layer="full")
    with checkpoint(config, seed=5) as (path, weights):
        model = ClassificationAdaPerceiver.from_pretrained(path)
    peer = PeerAdaPerceiver(model.config).double()
    peer.load_state_dict(model.state_dict())
    x = images(2, config)
    for N, width, depth in ((16, 16, 3), (12, 5, 2), (20, 9, 1)):
        with torch.inference_mode():
            out = peer(torch.from_numpy(x), N, width, depth)
        expected = rn.classify(weights, config, x, num_tokens=N, mat_dim=width, depth=depth)
        assert rel_err(out, expected) <= 1e-10


def test_profile_counts_the_gemms_of_a_forward():
    """The profile of one forward lists the GEMMs of every linear layer: with depth 2 at
    least 6 per block (q, k, v, proj, fc1, fc2), and shares between 0 and 1."""
    model = ClassificationAdaPerceiver(**tiny_config(depth=2)).eval()
    x = torch.zeros(2, 3, 16, 16)
    with torch.inference_mode():
        prof = profile_call(lambda: model(x))
    assert sum(prof.gemms.values()) >= 12
    assert 0 < prof.gemm_share < 1 and 0 <= prof.attention_share < 1


def test_bench_rows_print_for_a_tiny_model(monkeypatch):
    """The row functions run end to end on a tiny model and print one row per budget with
    its budget, speedup column and cross-check against the naive forward."""
    monkeypatch.setattr(timing, "SETTLE_SECONDS", 0.0)  # the rows' format, not timings
    model = ClassificationAdaPerceiver(**tiny_config()).eval()
    peer = PeerAdaPerceiver(model.config).eval()
    peer.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    out = io.StringIO()
    with redirect_stdout(out), torch.inference_mode():
        print(HEADER)
        bench_config(model, peer, x, (12, 8, 2), rounds=2, samples=1)
        bench_exit(model, x, rounds=1)
    lines = out.getvalue().splitlines()
    assert lines[1].split()[:4] == ["12", "8", "2", "2"]
    assert "time / full" in lines[-1] and "per_sample" in lines[-1]
