"""The accuracy-against-compute plot of a sweep's rows (matplotlib, PNG): error bars are the
95 % Wilson intervals, and the accuracy axis starts at a floor the caller chooses (chance,
or a baseline's accuracy), not at the worst point, so the scale is visible."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .evaluation import EXIT_POLICIES, Row


def _errors(rows: list[Row]) -> list[list[float]]:
    """matplotlib's yerr (2, n) in percent: accuracy - ci_low and ci_high - accuracy."""
    return [[100 * (r.accuracy - r.ci_low) for r in rows],
            [100 * (r.ci_high - r.accuracy) for r in rows]]


def plot(rows: list[Row], path: Path, title: str, floor: float,
         baselines: Sequence[tuple[str, float]] = ()) -> None:
    """Accuracy vs GFLOPs per image (log scale), twice: on the left the whole scale from ``floor``
    percent up, with a dotted line per (name, accuracy) of ``baselines``; on the right a
    zoom on the model's own range. Both show every grid configuration (grey), one series
    per axis (tokens, depth, width, each with the other two at full), the Pareto front and
    an early-exit curve per policy, with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100)
    for ax in (whole, zoom):
        _draw(ax, rows)
        ax.set_xscale("log")  # budgets span an order of magnitude: equal ratios, equal steps
        ax.set_xlabel("GFLOPs per image (analytic, log scale)")
        ax.grid(alpha=0.3)
    for (name, accuracy), colour in zip(baselines, ("0.35", "0.55", "0.75"), strict=False):
        whole.axhline(100 * accuracy, ls=":", lw=1.2, c=colour, label=f"{name}: "
                      f"{100 * accuracy:.1f} %", zorder=0)
    top = max(100 * r.ci_high for r in rows)
    whole.set_ylim(floor, max(min(100.0, top + 0.05 * max(top - floor, 1.0)), floor + 1))
    low = min(100 * r.ci_low for r in rows)
    zoom.set_ylim(low - 0.05 * (top - low), top + 0.05 * (top - low))
    whole.set_ylabel(f"accuracy (%), 95 % intervals, {rows[0].num_images:,} images")
    whole.set_title(f"{title}\n(axis from {floor:g} %)", fontsize=10)
    zoom.set_title("the same, zoomed on the model's accuracies", fontsize=10)
    whole.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw(ax, rows: list[Row]) -> None:
    """The rows' series on one matplotlib axis."""
    grid = [r for r in rows if r.tau is None]
    full = max(grid, key=lambda r: r.gflops)
    axes = {
        "tokens N (full depth, width)": [r for r in grid if r.depth == full.depth
                                         and r.width == full.width],
        "depth (all N, full width)": [r for r in grid if r.num_tokens == full.num_tokens
                                      and r.width == full.width],
        "FFN width (all N, full depth)": [r for r in grid if r.num_tokens == full.num_tokens
                                          and r.depth == full.depth],
    }
    ax.errorbar([r.gflops for r in grid], [100 * r.accuracy for r in grid], yerr=_errors(grid),
                fmt="o", ms=3.5, c="0.7", elinewidth=0.8, label="every (N, depth, width)",
                zorder=1)
    for (label, series), marker in zip(axes.items(), "os^", strict=True):
        series = sorted(series, key=lambda r: r.gflops)
        ax.errorbar([r.gflops for r in series], [100 * r.accuracy for r in series],
                    yerr=_errors(series), marker=marker, ms=6, lw=1.6, capsize=2, label=label,
                    zorder=3)
    for policy, style in zip(EXIT_POLICIES, ("--", ":"), strict=True):
        curve = sorted((r for r in rows if r.policy == policy), key=lambda r: r.gflops)
        if curve:
            ax.errorbar([r.gflops for r in curve], [100 * r.accuracy for r in curve],
                        yerr=_errors(curve), ls=style, marker="D", ms=5, lw=1.6, capsize=2,
                        label=f"early exit, {policy} (tau {curve[0].tau:g}..{curve[-1].tau:g}; "
                        "full N, width)", zorder=4)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.gflops)
    ax.step([r.gflops for r in front], [100 * r.accuracy for r in front], where="post", c="k",
            lw=1, alpha=0.6, zorder=2)
    ax.scatter([r.gflops for r in front], [100 * r.accuracy for r in front], s=90,
               facecolors="none", edgecolors="k", lw=1.2, label="Pareto front", zorder=5)
