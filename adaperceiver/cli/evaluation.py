"""Accuracy against compute over a model's budget grid, accumulated batch by batch.

For each batch and each FFN width m, one anytime pass (``model.anytime``, ANY-1) gives the
logits of every (tokens N, depth) configuration; only per-configuration sums are kept
(``Counts``: top-1 and top-5 hits, summed NLL of the true class), never the logits of the
whole set. Confidence early exit (``anytime.early_exit``, EXIT-1..4, ANY-6) at each
threshold and policy is derived from the same batch's full-width logits of all N latents
after each depth; it runs at the full N and width, and batch_mean decides per batch
(EXIT-2). GFLOPs per image are analytic (``adaperceiver.flops``); an early exit's cost is
the mean over images of ``exit_flops`` of its exit depth, which includes the write and
head evaluated after every block up to the exit to decide it (EXIT-1).

Accuracy k / n comes with its 95 % Wilson interval (``adaperceiver.stats``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..anytime import early_exit
from ..arguments import check_num_tokens
from ..flops import anytime_flops, exit_flops
from ..masks import granularities
from ..stats import wilson_interval

EXIT_TAUS = (0.5, 0.8, 0.9, 0.95, 0.99)
EXIT_POLICIES = ("batch_mean", "per_sample")
TAU_CANDIDATES = tuple(float(t) for t in np.round(np.linspace(0, 1, 101), 2)) + (0.995, 0.999)
TOP_K = 5
KEEP = 0.95  # the finding: the cheapest configuration keeping this fraction of full accuracy


class AnytimeModel(Protocol):
    """What computes a width's grid: ``anytime(x, num_tokens=..., mat_dim=...).logits``
    (b, K, G, C), as ``ClassificationAdaPerceiver.anytime`` (ANY-1) or an
    ``adaperceiver.onnx.anytime.OnnxAnytime`` (``adaperceiver.engine.anytime_model``)."""

    def anytime(self, x: Tensor, num_tokens: int | None = None,
                mat_dim: int | None = None) -> Any: ...


@dataclass(frozen=True)
class Grid:
    """The configurations of one sweep and their analytic GFLOPs per image.

    A pass of ``num_tokens`` latents serves the ``granularities`` G (MASK-2) at every depth
    1..K; one pass per width in ``widths``. ``gflops`` (W, K, G); ``exit_gflops`` (K,) the
    cost of an early exit at each depth at full N and width (EXIT-1). Early exit is
    accumulated for every tau in ``taus`` x ``EXIT_POLICIES``; rows are shown for ``shown``.
    ``trained_tokens`` / ``trained_widths``: the budgets the checkpoint was trained at.
    """

    num_tokens: int
    granularities: tuple[int, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    taus: tuple[float, ...]
    shown: tuple[float, ...]
    gflops: np.ndarray
    exit_gflops: np.ndarray
    num_classes: int
    trained_tokens: tuple[int, ...]
    trained_widths: tuple[int, ...]

    def trained(self, num_tokens: int, width: int) -> bool:
        return num_tokens in self.trained_tokens and width in self.trained_widths

    def untrained(self) -> str | None:
        """One line naming the budgets outside the trained values, None when there are none."""
        tokens = [g for g in self.granularities if g not in self.trained_tokens]
        widths = [m for m in self.widths if m not in self.trained_widths]
        parts = ([f"N={', '.join(map(str, tokens))} (trained: {list(self.trained_tokens)})"]
                 if tokens else []) + ([f"width={', '.join(map(str, widths))} (trained: "
                                        f"{list(self.trained_widths)})"] if widths else [])
        return (f"warning: {' and '.join(parts)} lie outside the budgets the checkpoint was "
                "trained at; computed anyway, marked '!' in the table") if parts else None


def make_grid(config: Mapping, image_size: int, *, num_tokens: int | None = None,
              widths: Sequence[int] | None = None,
              taus: Sequence[float] = EXIT_TAUS) -> Grid:
    """The grid of a model ``config`` on square images of ``image_size``: N latents (None:
    the config's default), ``widths`` (None: the config's mat_dims), early exit at ``taus``
    (rows shown for those in EXIT_TAUS)."""
    N = check_num_tokens(num_tokens, config)
    widths = tuple(config["mat_dims"] if widths is None else widths)
    grans = granularities(config["mask_token_grans"], N)
    costs = np.stack([anytime_flops(config, num_tokens=N, mat_dim=m,
                                    image_size=image_size).entries for m in widths]) / 1e9
    K = config["depth"]
    exits = np.array([exit_flops(config, e, num_tokens=N, mat_dim=widths[-1],
                                 image_size=image_size) for e in range(1, K + 1)]) / 1e9
    all_taus = tuple(sorted(set(taus) | set(EXIT_TAUS)))
    trained = tuple(g for g in config["mask_token_grans"] if g <= config["max_latent_tokens"])
    return Grid(N, grans, tuple(range(1, K + 1)), widths, all_taus, EXIT_TAUS, costs, exits,
                config["num_classes"], trained, tuple(config["mat_dims"]))


@dataclass
class Counts:
    """Sums over the images seen so far. grid_*: (W, K, G) per (width, depth, granularity);
    exit_*: (T, P) per (tau, policy); exit_depths (T, P, K): how many images exited at each
    depth. top1/top5: hits; nll: summed -log softmax of the true class (float64)."""

    images: Tensor
    grid_top1: Tensor
    grid_top5: Tensor
    grid_nll: Tensor
    exit_top1: Tensor
    exit_top5: Tensor
    exit_nll: Tensor
    exit_depths: Tensor

    @classmethod
    def zeros(cls, grid: Grid) -> Counts:
        W, K, G = grid.gflops.shape
        T, P = len(grid.taus), len(EXIT_POLICIES)
        i64, f64 = torch.int64, torch.float64
        return cls(torch.zeros((), dtype=i64), torch.zeros(W, K, G, dtype=i64),
                   torch.zeros(W, K, G, dtype=i64), torch.zeros(W, K, G, dtype=f64),
                   torch.zeros(T, P, dtype=i64), torch.zeros(T, P, dtype=i64),
                   torch.zeros(T, P, dtype=f64), torch.zeros(T, P, K, dtype=i64))

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{k: v + getattr(other, k) for k, v in self.tensors().items()})

    def to_json(self) -> dict[str, list | int | float]:
        return {k: v.tolist() for k, v in self.tensors().items()}

    @classmethod
    def from_json(cls, data: Mapping, grid: Grid) -> Counts:
        """Counts saved by ``to_json``, checked against the shapes of ``grid``."""
        zeros = cls.zeros(grid).tensors()
        loaded = {k: torch.tensor(data[k], dtype=v.dtype) for k, v in zeros.items()}
        for k, v in loaded.items():
            if v.shape != zeros[k].shape:
                raise ValueError(f"saved counts {k} have shape {tuple(v.shape)}, this sweep's "
                                 f"grid needs {tuple(zeros[k].shape)}")
        return cls(**loaded)


def _nll(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample -log softmax(logits)[y] in float64; logits (..., C), y (...)."""
    return -F.log_softmax(logits.double(), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _hits(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 and top-5 hits (bool, logits' leading shape); logits (..., C), y (...)."""
    top = logits.topk(min(TOP_K, logits.shape[-1]), -1).indices  # (..., 5)
    return top[..., 0] == y, (top == y.unsqueeze(-1)).any(-1)


def batch_counts(model: AnytimeModel, x: Tensor, y: Tensor,
                 grid: Grid) -> tuple[Counts, Tensor]:
    """The counts of one batch x (b, C, H, W), labels y (b,), and the full-width logits of
    all N latents after each depth (b, K, C) (what --save-logits writes)."""
    counts = Counts.zeros(grid)
    counts.images += len(y)
    yk = y[:, None, None]  # (b, 1, 1) against (b, K, G)
    for wi, m in enumerate(grid.widths):
        logits = model.anytime(x, num_tokens=grid.num_tokens, mat_dim=m).logits  # (b, K, G, C)
        top1, top5 = _hits(logits, yk.expand(logits.shape[:-1]))
        counts.grid_top1[wi] = top1.sum(0).cpu()
        counts.grid_top5[wi] = top5.sum(0).cpu()
        counts.grid_nll[wi] = _nll(logits, yk.expand(logits.shape[:-1])).sum(0).cpu()
        if m == grid.widths[-1]:
            by_depth = logits[:, :, -1]  # (b, K, C): the exit width, all N latents
    for ti, tau in enumerate(grid.taus):
        for pi, policy in enumerate(EXIT_POLICIES):
            depths, chosen = early_exit(by_depth, tau, policy)  # this batch is one batch
            top1, top5 = _hits(chosen, y)
            counts.exit_top1[ti, pi] = int(top1.sum())
            counts.exit_top5[ti, pi] = int(top5.sum())
            counts.exit_nll[ti, pi] = float(_nll(chosen, y).sum())
            counts.exit_depths[ti, pi] = torch.bincount(depths.cpu() - 1,
                                                        minlength=len(grid.depths))
    return counts, by_depth


@dataclass
class Row:
    """One configuration's results over num_images images. Fixed budgets have num_tokens,
    depth and width; early exit has tau and policy, runs at the full num_tokens and width
    and has depth = its mean exit depth. accuracy and top5 are fractions, ci_low/ci_high the
    95 % Wilson interval of accuracy; ms_per_image only when timing was measured."""

    name: str
    num_images: int
    accuracy: float
    ci_low: float
    ci_high: float
    top5: float
    nll: float
    gflops: float
    relative: float  # gflops / gflops of the full configuration
    ms_per_image: float | None = None
    num_tokens: int | None = None
    depth: float | None = None
    width: int | None = None
    tau: float | None = None
    policy: str | None = None
    trained: bool = True
    pareto: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def config_name(num_tokens: int, depth: int, width: int) -> str:
    return f"N={num_tokens} depth={depth} width={width}"


def exit_name(tau: float, policy: str, num_tokens: int, width: int) -> str:
    return f"exit tau={tau:g} {policy} (N={num_tokens} width={width})"


def _row(name: str, n: int, top1: int, top5: int, nll: float, gflops: float, full: float,
         **where) -> Row:
    low, high = wilson_interval(int(top1), n)
    return Row(name, n, int(top1) / n, low, high, int(top5) / n, float(nll) / n, float(gflops),
               float(gflops) / full, **where)


def make_rows(grid: Grid, counts: Counts) -> list[Row]:
    """Every configuration's row (fixed budgets, then early exit at the shown thresholds),
    sorted by GFLOPs, with the Pareto front marked."""
    n = int(counts.images)
    if n == 0:
        raise ValueError("no images were evaluated")
    full = float(grid.gflops[-1, -1, -1])  # the last width, all blocks, all N
    rows = []
    for wi, m in enumerate(grid.widths):
        for li, depth in enumerate(grid.depths):
            for gi, g in enumerate(grid.granularities):
                rows.append(_row(config_name(g, depth, m), n, counts.grid_top1[wi, li, gi],
                                 counts.grid_top5[wi, li, gi], counts.grid_nll[wi, li, gi],
                                 grid.gflops[wi, li, gi], full, num_tokens=g, depth=depth,
                                 width=m, trained=grid.trained(g, m)))
    N, m = grid.num_tokens, grid.widths[-1]
    for ti, tau in enumerate(grid.taus):
        if tau not in grid.shown:
            continue
        for pi, policy in enumerate(EXIT_POLICIES):
            hist = counts.exit_depths[ti, pi].double()  # (K,) images per exit depth
            rows.append(_row(exit_name(tau, policy, N, m), n, counts.exit_top1[ti, pi],
                             counts.exit_top5[ti, pi], counts.exit_nll[ti, pi],
                             float(hist @ torch.from_numpy(grid.exit_gflops)) / n, full,
                             num_tokens=N, width=m, tau=tau, policy=policy,
                             depth=float(hist @ torch.arange(1.0, len(hist) + 1,
                                                             dtype=torch.float64)) / n,
                             trained=grid.trained(N, m)))
    rows.sort(key=lambda r: r.gflops)
    mark_pareto(rows)
    return rows


def mark_pareto(rows: list[Row]) -> None:
    """Set ``pareto`` on the rows no other row beats: none has accuracy >= and GFLOPs <= with
    one of the two strict."""
    for r in rows:
        r.pareto = not any(s.accuracy >= r.accuracy and s.gflops <= r.gflops
                           and (s.accuracy > r.accuracy or s.gflops < r.gflops) for s in rows)


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table: accuracy with its 95 % interval, top-5, NLL,
    GFLOPs, compute relative to the full model, ms/img when measured; flags '*' (Pareto
    front) and '!' (outside the trained budgets)."""
    timed = any(r.ms_per_image is not None for r in rows)
    width = max(len("configuration"), *(len(r.name) for r in rows))
    lines = [f"{'configuration':<{width}}  {'acc %':>6}  {'95% interval':>13}  {'top-5 %':>7}  "
             f"{'NLL':>6}  {'GFLOPs':>9}  {'rel':>5}" + ("   ms/img" if timed else "")
             + "  flags"]
    for r in rows:
        interval = f"{100 * r.ci_low:.2f}-{100 * r.ci_high:.2f}"
        ms = "" if not timed else ("        -" if r.ms_per_image is None
                                   else f"  {r.ms_per_image:7.3f}")
        flags = ("*" if r.pareto else "") + ("" if r.trained else "!")
        lines.append(f"{r.name:<{width}}  {100 * r.accuracy:6.2f}  {interval:>13}  "
                     f"{100 * r.top5:7.2f}  {r.nll:6.3f}  {r.gflops:9.4g}  {r.relative:5.2f}"
                     f"{ms}  {flags}")
    return "\n".join(lines)


def finding(rows: list[Row], keep: float = KEEP) -> str:
    """One line: the cheapest row whose accuracy is at least ``keep`` x the full
    configuration's (the fixed row with the most GFLOPs), and its share of the compute."""
    full = max((r for r in rows if r.tau is None), key=lambda r: r.gflops)
    target = keep * full.accuracy
    cheapest = min((r for r in rows if r.accuracy >= target), key=lambda r: (r.gflops, r.name))
    return (f"keeping {100 * keep:g} % of full accuracy ({100 * full.accuracy:.2f} % at "
            f"{full.name}, so >= {100 * target:.2f} %) needs {100 * cheapest.relative:.0f} % of "
            f"the compute: {cheapest.name} ({100 * cheapest.accuracy:.2f} %)")


AXES = (("tokens N", "num_tokens"), ("depth", "depth"), ("width", "width"))


def axis_effects(rows: list[Row]) -> str:
    """Two lines: for each axis (tokens N, depth, width), the accuracy at its smallest and at
    its largest value with the other two held at full, then held at their smallest, and
    whether the two 95 % intervals are apart (the change is more than the noise) or
    overlap. An axis can matter in one regime and not in the other (a wide, deep model
    needs few tokens); both are printed so that neither is hidden."""
    grid = [r for r in rows if r.tau is None]
    lines = []
    for regime, pick in (("full", max), ("their smallest", min)):
        parts = []
        for label, field in AXES:
            others = [f for _, f in AXES if f != field]
            held = {f: pick(getattr(r, f) for r in grid) for f in others}
            series = sorted((r for r in grid if all(getattr(r, f) == v for f, v in held.items())),
                            key=lambda r: getattr(r, field))
            small, large = series[0], series[-1]
            apart = small.ci_high < large.ci_low or large.ci_high < small.ci_low
            parts.append(f"{label} {getattr(small, field)} -> {getattr(large, field)}: "
                         f"{100 * small.accuracy:.2f} -> {100 * large.accuracy:.2f} % "
                         f"({'beyond' if apart else 'within'} the intervals)")
        lines.append(f"each axis with the other two at {regime}: " + "; ".join(parts))
    return "\n".join(lines)


@dataclass
class Evaluation:
    """A finished sweep: its rows, grid and counts (the budget search reads the counts of
    every accumulated threshold)."""

    rows: list[Row]
    grid: Grid
    counts: Counts


@dataclass
class Choice:
    """The answer to a compute budget: the most accurate fixed configuration within it and,
    per exit policy, the confidence threshold with the best accuracy within it (None when
    no threshold fits)."""

    fixed: Row
    exits: dict[str, tuple[float, float, float] | None]  # policy -> (tau, accuracy, gflops)


def choose(evaluation: Evaluation, budget: float) -> Choice:
    """The most accurate configuration with GFLOPs <= budget (ties: the cheaper one), and per
    policy the accumulated depth_tau that meets the budget on this data (mean GFLOPs
    <= budget) with the best accuracy."""
    fitting = [r for r in evaluation.rows if r.tau is None and r.gflops <= budget]
    if not fitting:
        cheapest = min(r.gflops for r in evaluation.rows)
        raise ValueError(f"--budget {budget} GFLOPs is below the cheapest configuration "
                         f"({cheapest:.6g} GFLOPs per image)")
    fixed = max(fitting, key=lambda r: (r.accuracy, -r.gflops))
    c, grid = evaluation.counts, evaluation.grid
    n = int(c.images)
    cost = c.exit_depths.double() @ torch.from_numpy(grid.exit_gflops) / n  # (T, P)
    exits: dict[str, tuple[float, float, float] | None] = {}
    for pi, policy in enumerate(EXIT_POLICIES):
        best = None
        for ti, tau in enumerate(grid.taus):
            acc, gflops = int(c.exit_top1[ti, pi]) / n, float(cost[ti, pi])
            if gflops <= budget and (best is None or (acc, -gflops) > (best[1], -best[2])):
                best = (tau, acc, gflops)
        exits[policy] = best
    return Choice(fixed, exits)
