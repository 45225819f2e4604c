"""Every engine and precision at the published size: ``python -m adaperceiver.bench.engines``.

``[--quick] [--rows] [--compile] [--profile] [--rounds R]``. Random weights at the published size
(``published.randomize``), float32 inputs, torch's thread count for every runtime. It prints:

1. the machine's GEMM ceiling on the model's linear shapes per backend, float32 and the
   bf16 and int8 products (``ceiling``);
2. for batch 8 and 1 at the full budget (256, 832, 21), one row per path, all timed in the
   same interleaved rounds: the peer (the official code's eager way, ``peer``), ours eager,
   ours compiled (``--compile``), ours under bfloat16 autocast, ours compiled under it
   (``--compile``), ONNX Runtime float32 and int8 (the export of this budget, dynamically
   quantized). Columns: median [min..max] ms;
   ``x peer`` = median [min..max] of the per-round ratios peer / path (above 1: faster);
   ``GFLOP/s`` = the forward's FLOPs (``flops.flops`` x batch) over the median time, to set
   beside the ceilings of part 1;
   the max relative logits error and top-1 agreement against ours fp32 eager; setup
   seconds (export, quantization, compilation with its first call); the process's peak
   resident memory after the path was set up and run (``ru_maxrss``, cumulative, so it
   grows in row order); the minor page faults (thousands) and system CPU seconds of one
   more call (``kernel_work``): fresh pages the kernel maps in for the activations, a cost
   set by the process's allocator state more than by the path (the peer's can be a sixth
   of its time; docs/performance.md, "The allocator");
3. (not with ``--rows``, which repeated runs use: parts 1 and 2 need one export, this part
   needs one per smaller budget and the anytime graph) proportionality at batch 8 (and 1
   without ``--quick``): for each path but the peer,
   the time of width 416 and of N = 64 tokens relative to its own full budget (median
   [min..max] of per-round ratios) beside the FLOP ratio (for ONNX Runtime each budget is
   another export); then for ours eager, bf16 and ONNX Runtime fp32 and int8 the
   confidence exit (batch_mean, per_sample) relative to that path's full budget beside
   its FLOP ratio (``bench_exits``; ONNX Runtime exits on the host after the anytime graph);
4. with ``--profile``: the milliseconds (and shares) of one batch-8 forward in GEMMs,
   attention and the rest (elementwise, norms, copies) for ours eager (torch profiler,
   self times) and ONNX Runtime float32 (its node profile).

The load average is printed before and after; on a shared machine trust the per-round
ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compiled import compile_frozen
from ..flops import flops
from ..model import ClassificationAdaPerceiver
from ..onnx.export import export_onnx
from ..onnx.quantize import quantize_int8
from ..onnx.session import OnnxGraph
from .ceiling import gemm_ceilings
from .cli import ATTENTION_OPS, GEMM_OPS
from .peer import PeerAdaPerceiver
from .published import PUBLISHED, published_model
from .timing import add_round_arguments, interleaved, load, ratios, spread

FULL = (256, 832, 21)  # (N, width, depth)
SMALLER = {"width 416": (256, 416, 21), "N 64": (64, 832, 21)}
# self times here, so the math attention's softmax is counted on its own
ATTENTION_NAMES = (*ATTENTION_OPS, "aten::_softmax")


@dataclass
class Route:
    """One way to run the model: ``build(budget) -> call(images)`` and its setup cost."""

    name: str
    build: Callable[[tuple[int, int, int], Any], Callable[[], Any]]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def kernel_work(call: Callable[[], Any]) -> tuple[Any, int, float]:
    """``call()``'s result, with the minor page faults and system CPU seconds the process
    (all its threads) took during the call (``getrusage``)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    out = call()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return out, after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime


def _logits(out: Any) -> torch.Tensor:
    """(B, C) float64 logits of a model output, the peer's tensor or an ONNX Runtime dict."""
    logits = (torch.from_numpy(out["logits"]) if isinstance(out, dict)
              else out if isinstance(out, torch.Tensor) else out.logits)
    return logits[:, 0].double()  # (B, 1, C) -> (B, C)


def paths(model: ClassificationAdaPerceiver, compile_: bool) -> list[Route]:
    """Each path as a builder of a zero-argument call at a budget on images x (float32)."""
    peer = PeerAdaPerceiver(model.config).eval()
    peer.load_state_dict(model.state_dict())
    graphs: dict[tuple[int, int, int], Any] = {}  # the float32 export of each budget

    def ours(budget, x, autocast=False):
        N, m, d = budget
        if not autocast:
            return partial(model, x, num_tokens=N, mat_dim=m, depth=d)

        def call():
            with torch.autocast("cpu", torch.bfloat16):
                return model(x, num_tokens=N, mat_dim=m, depth=d)
        return call

    def onnxruntime(budget, x, int8=False):
        if budget not in graphs:
            N, m, d = budget
            graphs[budget] = export_onnx(model, None, num_tokens=N, mat_dim=m, depth=d).proto
        proto = quantize_int8(graphs[budget]) if int8 else graphs[budget]
        return partial(OnnxGraph(proto, threads=torch.get_num_threads()).run, x.numpy())

    found = [Route("peer eager (official style)", lambda b, x: partial(peer, x, *b)),
             Route("ours eager", ours)]
    if compile_:
        def compiled_call(compiled, budget, x):
            def call():
                with torch.inference_mode(False), torch.no_grad():  # inductor: no inference
                    return compiled(x.clone(), num_tokens=budget[0], mat_dim=budget[1],  # tensors
                                    depth=budget[2])
            return call
        found.append(Route("ours compiled", partial(compiled_call, compile_frozen(model))))
    found.append(Route("ours autocast bf16", partial(ours, autocast=True)))
    if compile_:
        bf16 = compile_frozen(model, autocast=torch.bfloat16)
        found.append(Route("ours compiled bf16", partial(compiled_call, bf16)))
    return found + [Route("onnxruntime fp32", onnxruntime),
                    Route("onnxruntime int8", partial(onnxruntime, int8=True))]


def setup(path: Route, budget: tuple[int, int, int], x: torch.Tensor) -> tuple[Callable, float]:
    """(the call, seconds to build it and run it once)."""
    start = time.perf_counter()
    call = path.build(budget, x)
    call()
    return call, time.perf_counter() - start


def bench_paths(all_paths: list[Route], x: torch.Tensor, rounds: int, config: dict,
                full: tuple[int, int, int] = FULL) -> None:
    """The rows of one batch size at the budget ``full`` (module doc, part 2)."""
    N, m, d = full
    work = flops(config, num_tokens=N, mat_dim=m, depth=d) * x.shape[0]  # FLOPs of one call
    calls, setup_s, peak = {}, {}, {}
    for path in all_paths:
        calls[path.name], setup_s[path.name] = setup(path, full, x)
        peak[path.name] = _peak_mib()
    t = interleaved(calls, rounds)
    reference = _logits(calls["ours eager"]())
    peer = t[all_paths[0].name]
    print(f"{'path':<28} {'ms':>22} {'x peer':>18} {'GFLOP/s':>7} {'max rel err':>11} "
          f"{'top-1':>6} {'setup s':>8} {'peak MiB':>8} {'k faults':>8} {'sys s':>5}", flush=True)
    for name, call in calls.items():
        out, faults, sys_s = kernel_work(call)
        got = _logits(out)
        err = float((got - reference).abs().max() / reference.abs().max())
        agree = float((got.argmax(-1) == reference.argmax(-1)).double().mean())
        rate = work / statistics.median(t[name]) / 1e9
        print(f"{name:<28} {spread(t[name], 1e3):>22} {spread(ratios(peer, t[name]), 1, '.2f'):>18}"
              f" {rate:>7.0f} {err:>11.1e} {agree:>6.3f} {setup_s[name]:>8.1f}"
              f" {peak[name]:>8.0f} {faults / 1e3:>8.1f} {sys_s:>5.2f}", flush=True)


def bench_proportions(all_paths: list[Route], x: torch.Tensor, rounds: int, config: dict,
                      full: tuple[int, int, int] = FULL,
                      smaller: dict[str, tuple[int, int, int]] = SMALLER) -> None:
    """Time relative to full beside the FLOP ratio for each path but the peer (part 3)."""
    full_flops = flops(config, num_tokens=full[0], mat_dim=full[1], depth=full[2])
    for path in all_paths[1:]:
        fns = {label: path.build(budget, x) for label, budget in (("full", full),
                                                                   *smaller.items())}
        t = interleaved(fns, rounds)
        cells = [f"{label} {spread(ratios(t[label], t['full']), 1, '.2f')} (FLOPs "
                 f"{flops(config, num_tokens=N, mat_dim=m, depth=d) / full_flops:.2f})"
                 for label, (N, m, d) in smaller.items()]
        print(f"  {path.name:<28} time / full: {', '.join(cells)}", flush=True)


def bench_exits(model: ClassificationAdaPerceiver, all_paths: list[Route], x: torch.Tensor,
                rounds: int, full: tuple[int, int, int] = FULL) -> None:
    """Confidence exit per engine at the width and N of ``full``, at a tau that spreads the
    per-sample exit depths (``cli._spread_tau``): time relative to the same path's full
    budget beside the FLOP ratio (mean over samples of each exit depth). Torch fp32 and
    bf16 run ``engine.runner`` with ``depth_tau``; ONNX Runtime fp32 and int8 run one
    anytime graph (``OnnxAnytime``, int8 quantized from it) and exit on the host (ANY-6),
    so they save no time; the compiled path is skipped (the exit is data-dependent)."""
    from ..anytime import early_exit
    from ..engine import runner
    from ..onnx.anytime import OnnxAnytime
    from .cli import _confidences, _spread_tau

    N, m, d = full
    tau = _spread_tau(_confidences(model, x))
    routes = {path.name: path for path in all_paths}
    grid = OnnxAnytime(model)
    grid.graph(N, m, None, tuple(x.shape[2:]))
    grids = {"onnxruntime fp32": grid, "onnxruntime int8": grid.quantized()}

    def exits(name: str, policy: str) -> Callable[[], Any]:
        if name in grids:
            def call() -> torch.Tensor:
                by_depth = grids[name].anytime(x, num_tokens=N, mat_dim=m).logits[:, :, -1]
                return early_exit(by_depth, tau, policy)[0]  # (B,) exit depths
            return call
        precision = "bf16" if "bf16" in name else "fp32"
        run = runner(model, precision=precision, num_tokens=N, mat_dim=m, depth_tau=tau,
                     exit_policy=policy)
        return lambda: run(x).exit_depths

    full_flops = flops(model.config, num_tokens=N, mat_dim=m, depth=d)
    for name in ("ours eager", "ours autocast bf16", *grids):
        fns = {"full": routes[name].build(full, x)}
        fns.update({p: exits(name, p) for p in ("batch_mean", "per_sample")})
        t = interleaved(fns, rounds)
        cells = []
        for policy in ("batch_mean", "per_sample"):
            depths = fns[policy]().tolist()
            gflop = sum(flops(model.config, num_tokens=N, mat_dim=m, depth=e)
                        for e in depths) / len(depths)
            cells.append(f"{policy} {spread(ratios(t[policy], t['full']), 1, '.2f')} (FLOPs "
                         f"{gflop / full_flops:.2f}, depths {depths})")
        print(f"  {name:<28} exit tau={tau:.3g} time / full: {'; '.join(cells)}", flush=True)


def _torch_classes(call: Callable[[], Any]) -> Counter:
    """Self CPU milliseconds by op class in one profiled call (torch profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    classes: Counter = Counter()
    for event in prof.key_averages():
        kind = ("GEMM" if event.key in GEMM_OPS else
                "attention" if event.key in ATTENTION_NAMES else "elementwise/other")
        classes[kind] += event.self_cpu_time_total / 1e3
    return classes


def _ort_classes(proto: Any, x: np.ndarray) -> Counter:
    """Kernel milliseconds by op class in one run (ONNX Runtime's node profile): MatMul
    (and Gemm, MatMulInteger) against a weight = GEMM; MatMul of two activations and
    Softmax = attention; the rest elementwise/other."""
    import onnxruntime as ort

    weights = {init.name for init in proto.graph.initializer}
    kind_of = {}
    for node in proto.graph.node:
        matmul = node.op_type in ("MatMul", "Gemm", "MatMulInteger", "Einsum")
        kind_of[node.name] = ("GEMM" if matmul and node.input[-1 if node.op_type == "Einsum"
                                                             else 1] in weights
                              else "attention" if matmul or node.op_type == "Softmax"
                              else "elementwise/other")
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        session = ort.InferenceSession(proto.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"images": x})  # warm-up, profiled too: the last run is kept below
        session.run(None, {"images": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    half = runs[len(runs) // 2:]  # the second run
    classes: Counter = Counter()
    for event in half:
        node = event["name"].removesuffix("_kernel_time")
        op = event.get("args", {}).get("op_name", "")
        kind = kind_of.get(node) or ("GEMM" if "MatMul" in op or op in ("Gemm", "FusedGemm")
                                     else "attention" if op == "Softmax"
                                     else "elementwise/other")
        classes[kind] += event["dur"] / 1e3
    return classes


def bench_profile(model: ClassificationAdaPerceiver, x: torch.Tensor,
                  full: tuple[int, int, int] = FULL) -> None:
    """Part 4: op-class times of ours eager and ONNX Runtime float32 at ``full``."""
    N, m, d = full
    proto = export_onnx(model, None, num_tokens=N, mat_dim=m, depth=d).proto
    with torch.inference_mode():
        mine = _torch_classes(partial(model, x, num_tokens=N, mat_dim=m, depth=d))
    theirs = _ort_classes(proto, x.numpy())
    for name, ms in (("ours eager", mine), ("onnxruntime fp32", theirs)):
        total = sum(ms.values())
        print(f"  {name:<18} total {total:.0f} ms: " + ", ".join(
            f"{k} {ms[k]:.0f} ms ({ms[k] / total:.0%})"
            for k in ("GEMM", "attention", "elementwise/other")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adaperceiver.bench.engines",
                                     description=__doc__.splitlines()[0])
    add_round_arguments(parser, "3 rounds, 3 GEMM samples, proportions at batch 8 only")
    parser.add_argument("--rows", action="store_true",
                        help="only the GEMM ceilings and the rows of each batch size (no "
                        "proportionality or exits: they export three more graphs)")
    parser.add_argument("--compile", action="store_true",
                        help="also the compiled paths, fp32 and bf16 (compiles each budget "
                        "for minutes)")
    parser.add_argument("--profile", action="store_true",
                        help="op-class shares of ours eager and ONNX Runtime (batch 8)")
    args = parser.parse_args(argv)
    rounds, samples = (3, 3) if args.quick else (args.rounds, 7)
    torch.manual_seed(0)
    model = published_model()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{load()}; {rounds} rounds; times as median [min..max]", flush=True)
    for rows in (2048, 256):  # B x N at batch 8 and 1
        gemm_ceilings(rows, samples)
    all_paths = paths(model, args.compile)
    with torch.inference_mode():
        inputs = {batch: torch.randn(batch, 3, 224, 224) for batch in (8, 1)}
        for batch, x in inputs.items():
            print(f"\nbatch {batch}, budget (N, width, depth) = {FULL}, load average {load()}")
            bench_paths(all_paths, x, rounds, PUBLISHED)
        for batch, x in inputs.items():  # after the rows: each smaller budget is an export
            if not args.rows and (batch == 8 or not args.quick):
                print(f"proportionality at batch {batch}:")
                bench_proportions(all_paths, x, rounds, PUBLISHED)
                bench_exits(model, all_paths, x, rounds)
        if args.profile:
            print("\nshare of one batch-8 forward by op class (self/kernel times):")
            bench_profile(model, torch.randn(8, 3, 224, 224))
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
