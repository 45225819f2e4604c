"""The engines benchmark (``adaperceiver.bench.engines``) and the GEMM ceiling
(``adaperceiver.bench.ceiling``) print their rows; tiny sizes, no timing asserted."""

from __future__ import annotations

import io
import re
import time
from contextlib import redirect_stdout

import pytest
import torch

import reference_numpy as rn
from adaperceiver import ClassificationAdaPerceiver
from adaperceiver.bench import timing
from adaperceiver.bench.ceiling import backends, gemm_ceilings, reduced_backends
from adaperceiver.bench.engines import (
    bench_exits,
    bench_paths,
    bench_proportions,
    kernel_work,
    paths,
)
from adaperceiver.bench.published import randomize
from adaperceiver.bench.timing import interleaved

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def no_settling(monkeypatch):
    """These tests check what the benches print, not timings: no pause between calls
    (``interleaved``'s default, ``timing.SETTLE_SECONDS``, is for real measurements)."""
    monkeypatch.setattr(timing, "SETTLE_SECONDS", 0.0)


def test_every_gemm_backend_computes_the_same_product():
    """Each backend's call is x W^T (float32 agreement), so the ceiling compares like with like."""
    calls, missing = backends(16, 32, 8)
    results = {name: torch.as_tensor(call()[0] if name == "mlas" else call()).float()
               for name, call in calls.items()}
    assert {"mkl", "openblas", "mlas"} <= set(results) and not missing
    for name, y in results.items():
        assert torch.allclose(y, results["mkl"], rtol=1e-4, atol=1e-4), name
    out = io.StringIO()
    with redirect_stdout(out):
        gemm_ceilings(4, samples=1)
    assert len(re.findall(r"ceiling \d+ \((mkl|onednn|openblas|mlas)\)", out.getvalue())) == 3
    assert len(re.findall(r"reduced precision: .*int8 mlas \d+", out.getvalue())) == 3


def test_reduced_precision_backends_compute_the_product():
    """bf16 and int8 ceilings time x W^T too: within bfloat16 / int8 rounding of float32."""
    calls, _ = backends(64, 96, 32)
    reference = calls["mkl"]().double()
    reduced, missing = reduced_backends(64, 96, 32)
    assert "int8 mlas" in reduced and ("bf16 onednn" in reduced or missing)
    for name, call in reduced.items():
        y = torch.as_tensor(call()[0] if "mlas" in name else call()).double()
        err = float((y - reference).abs().max() / reference.abs().max())
        assert err <= (3e-2 if "bf16" in name else 0.1), (name, err)
        assert err > 1e-6, (name, err)  # really the reduced product, not float32


def test_kernel_work_counts_the_page_faults_of_fresh_memory():
    """A call that writes 64 MiB of fresh memory takes page faults (at least one per 2 MiB
    even with transparent huge pages) and system time; its result is passed through."""
    import numpy as np

    size = 64 << 20
    out, faults, sys_s = kernel_work(lambda: np.ones(size, np.uint8))
    assert out.shape == (size,) and out[-1] == 1
    assert faults >= size // (2 << 20), faults
    assert sys_s >= 0.0


@pytest.mark.slow  # exports and quantizes two tiny budgets: 10-60 s on the loaded machine
def test_engine_rows_print_for_a_tiny_model():
    """One row per path; the fp32 paths agree with ours eager on every top-1 class."""
    model = ClassificationAdaPerceiver(**rn.tiny_config()).eval()
    randomize(model)
    routes = paths(model, compile_=False)
    x = torch.randn(4, 3, 16, 16)
    out = io.StringIO()
    with torch.inference_mode(), redirect_stdout(out):
        bench_paths(routes, x, 1, model.config, full=(8, 16, 2))
        bench_proportions(routes, x, 1, model.config, full=(8, 16, 2),
                          smaller={"width 8": (8, 8, 2)})
    text = out.getvalue()
    for route in routes:
        assert route.name in text
    for name in ("ours eager", "onnxruntime fp32"):
        row = next(line for line in text.splitlines() if line.startswith(name))
        assert row.split()[-5] == "1.000", row  # the top-1 column
    assert text.count("time / full: width 8") == len(routes) - 1


@pytest.mark.slow  # exports one tiny anytime graph and one fixed budget: 10-60 s loaded
def test_exit_rows_print_per_engine_with_their_exit_depths():
    """One exit line per engine and precision; the exit depths printed are the ones its
    policy gives (batch_mean: one depth for the whole batch), each within 1..depth."""
    config = rn.tiny_config()
    model = ClassificationAdaPerceiver(**config).eval()
    randomize(model)
    x = torch.randn(4, 3, 16, 16)
    out = io.StringIO()
    with torch.inference_mode(), redirect_stdout(out):
        bench_exits(model, paths(model, compile_=False), x, rounds=1, full=(8, 16, 3))
    lines = [line for line in out.getvalue().splitlines() if "exit tau=" in line]
    assert [line.split()[0] + " " + line.split()[1] for line in lines] == [
        "ours eager", "ours autocast", "onnxruntime fp32", "onnxruntime int8"]
    for line in lines:
        found = re.findall(r"depths \[([0-9, ]+)\]", line)
        batch_mean, per_sample = ([int(d) for d in f.split(",")] for f in found)
        assert len(set(batch_mean)) == 1 and len(per_sample) == 4
        assert all(1 <= d <= config["depth"] for d in batch_mean + per_sample)


def test_interleaved_lets_each_call_start_on_a_settled_machine(monkeypatch):
    """Every timed call (and warm-up) starts at least ``timing.SETTLE_SECONDS`` (the default
    pause, read at the call) after the previous one ended, and the recorded times are the
    calls alone: each within the pause of the call's own duration, not including it."""
    monkeypatch.setattr(timing, "SETTLE_SECONDS", 0.05)
    stamps: list[tuple[str, float, float]] = []

    def call(name):
        start = time.perf_counter()
        time.sleep(0.01)
        stamps.append((name, start, time.perf_counter()))

    times = interleaved({"a": lambda: call("a"), "b": lambda: call("b")}, rounds=2)
    assert [name for name, _, _ in stamps] == ["a", "b"] * 3  # warm-ups, then two rounds
    gaps = [start - end for (_, _, end), (_, start, _) in zip(stamps[:-1], stamps[1:], strict=True)]
    assert min(gaps) >= 0.05, gaps
    own = {name: [end - start for n, start, end in stamps[2:] if n == name] for name in "ab"}
    for name in "ab":
        assert all(d <= t < d + 0.05 for d, t in zip(own[name], times[name], strict=True)), (
            own[name], times[name])
