"""Accuracy against compute over a model's whole budget grid, on labelled data.

Accuracy and NLL of every (tokens N, depth, width) configuration come from one anytime
pass per width (``model.anytime``, ANY-1); confidence early exit at each threshold and
policy is derived from the same grid (``anytime.early_exit``, ANY-6). GFLOPs per image are
analytic (``adaperceiver.flops``; for early exit the mean over images of the exit depth's
cost, not counting the confidence checks). Milliseconds per image are measured: one
forward at that budget on a timing batch, the fastest of ``repeats`` runs.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..anytime import early_exit
from ..model import ClassificationAdaPerceiver

EXIT_TAUS = (0.5, 0.8, 0.9, 0.95, 0.99)
EXIT_POLICIES = ("batch_mean", "per_sample")


@dataclass
class Row:
    """One configuration's results. Fixed budgets have num_tokens, depth and width; early exit
    has tau and policy (and depth is the mean exit depth)."""

    name: str
    accuracy: float
    nll: float
    gflops: float
    relative: float  # gflops / gflops of the full configuration
    ms_per_image: float
    num_tokens: int | None = None
    depth: float | None = None
    width: int | None = None
    tau: float | None = None
    policy: str | None = None
    pareto: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """Rows of every configuration, plus what the budget search needs: the full-width
    logits of all N latents after each depth (n, L, C), the labels and the analytic GFLOPs
    of each depth at full N and width (L,)."""

    rows: list[Row]
    logits_by_depth: Tensor
    labels: Tensor
    gflops_by_depth: np.ndarray
    batch_size: int


def _nll(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample negative log-likelihood of the true class, logits (..., C), y broadcast."""
    return -F.log_softmax(logits.double(), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _timed_ms(model: ClassificationAdaPerceiver, x: Tensor, repeats: int, **budget) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model(x, **budget)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / len(x)


@torch.inference_mode()
def evaluate(model: ClassificationAdaPerceiver, x: Tensor, y: Tensor, *, batch_size: int = 64,
             taus: tuple[float, ...] = EXIT_TAUS, repeats: int = 3,
             progress: bool = True) -> Evaluation:
    """Every grid configuration and every (tau, policy) early exit on images x (n, C, H, W),
    labels y (n,). batch_mean exit decides per consecutive batch of ``batch_size`` images."""
    c = model.config
    widths = c["mat_dims"]
    timing = x[:batch_size]
    bar = tqdm(total=len(widths) * math.ceil(len(x) / batch_size), desc="anytime grid",
               unit="batch", disable=not progress, file=sys.stderr)
    grid_rows: list[dict] = []
    for m in widths:
        correct = nll = 0
        columns = []
        for start in range(0, len(x), batch_size):
            out = model.anytime(x[start:start + batch_size], mat_dim=m)
            yb = y[start:start + batch_size, None, None]  # (b, 1, 1)
            correct = correct + (out.logits.argmax(-1) == yb).sum(0)  # (L, G)
            nll = nll + _nll(out.logits, yb.expand(out.logits.shape[:-1])).sum(0)
            if m == widths[-1]:
                columns.append(out.logits[:, :, -1])  # (b, L, C): all N latents
            bar.update()
        for li, depth in enumerate(out.depths):
            for gi, g in enumerate(out.granularities):
                grid_rows.append(dict(num_tokens=g, depth=depth, width=m,
                                      accuracy=float(correct[li, gi]) / len(x),
                                      nll=float(nll[li, gi]) / len(x),
                                      gflops=float(out.gflops[li, gi])))
    bar.close()
    full_gflops = grid_rows[-1]["gflops"]  # the last row: all N, all blocks, full width
    logits_by_depth = torch.cat(columns)  # (n, L, C)
    full_n = out.granularities[-1]
    gflops_by_depth = np.array([r["gflops"] for r in grid_rows
                                if r["width"] == widths[-1] and r["num_tokens"] == full_n])
    rows = []
    configs = [(r, dict(num_tokens=r["num_tokens"], depth=r["depth"], mat_dim=r["width"]))
               for r in grid_rows]
    for tau in taus:
        for policy in EXIT_POLICIES:
            depths, logits = early_exit(logits_by_depth, tau, policy, batch_size)
            configs.append((dict(
                tau=tau, policy=policy, depth=float(depths.double().mean()),
                accuracy=float((logits.argmax(-1) == y).double().mean()),
                nll=float(_nll(logits, y).mean()),
                gflops=float(gflops_by_depth[depths.numpy() - 1].mean())),
                dict(depth_tau=tau, exit_policy=policy)))
    model(timing)  # warm-up
    for fields, budget in tqdm(configs, desc="timing", unit="config", disable=not progress,
                               file=sys.stderr):
        name = (f"exit tau={fields['tau']} {fields['policy']}" if "tau" in fields else
                f"N={fields['num_tokens']} depth={fields['depth']} width={fields['width']}")
        rows.append(Row(name=name, relative=fields["gflops"] / full_gflops,
                        ms_per_image=_timed_ms(model, timing, repeats, **budget), **fields))
    mark_pareto(rows)
    return Evaluation(rows, logits_by_depth, y, gflops_by_depth, batch_size)


def mark_pareto(rows: list[Row]) -> None:
    """Set ``pareto`` on the rows no other row beats: none has accuracy >= and GFLOPs <= with
    one of the two strict."""
    for r in rows:
        r.pareto = not any(s.accuracy >= r.accuracy and s.gflops <= r.gflops
                           and (s.accuracy > r.accuracy or s.gflops < r.gflops) for s in rows)


def table(rows: list[Row]) -> str:
    """The results as an aligned text table; '*' marks the Pareto front."""
    width = max(len("configuration"), *(len(r.name) for r in rows))
    lines = [f"{'configuration':<{width}}  {'acc %':>6}  {'NLL':>6}  {'GFLOPs':>8}  "
             f"{'rel':>5}  {'ms/img':>7}  pareto"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {100 * r.accuracy:6.2f}  {r.nll:6.3f}  {r.gflops:8.5f}  "
                     f"{r.relative:5.2f}  {r.ms_per_image:7.3f}  {'*' if r.pareto else ''}")
    return "\n".join(lines)


@dataclass
class Choice:
    """The answer to a compute budget: the most accurate fixed configuration within it and,
    per exit policy, the confidence threshold with the best accuracy within it (None when
    no threshold fits)."""

    fixed: Row
    exits: dict[str, tuple[float, float, float] | None]  # policy -> (tau, accuracy, gflops)


TAU_CANDIDATES = tuple(np.round(np.linspace(0, 1, 101), 2)) + (0.995, 0.999)


def choose(evaluation: Evaluation, budget: float) -> Choice:
    """The most accurate configuration with GFLOPs <= budget (ties: the cheaper one), and the
    depth_tau per policy that meets the budget on this data (mean GFLOPs <= budget)."""
    fitting = [r for r in evaluation.rows if r.tau is None and r.gflops <= budget]
    if not fitting:
        cheapest = min(r.gflops for r in evaluation.rows)
        raise ValueError(f"--budget {budget} GFLOPs is below the cheapest configuration "
                         f"({cheapest:.6g} GFLOPs per image)")
    fixed = max(fitting, key=lambda r: (r.accuracy, -r.gflops))
    exits: dict[str, tuple[float, float, float] | None] = {}
    y = evaluation.labels
    for policy in EXIT_POLICIES:
        best = None
        for tau in TAU_CANDIDATES:
            depths, logits = early_exit(evaluation.logits_by_depth, float(tau), policy,
                                        evaluation.batch_size)
            cost = float(evaluation.gflops_by_depth[depths.numpy() - 1].mean())
            acc = float((logits.argmax(-1) == y).double().mean())
            if cost <= budget and (best is None or (acc, -cost) > (best[1], -best[2])):
                best = (float(tau), acc, cost)
        exits[policy] = best
    return Choice(fixed, exits)
