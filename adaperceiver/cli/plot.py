"""The accuracy-against-compute plot of an ``Evaluation`` (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

from .evaluation import EXIT_POLICIES, Row


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Accuracy vs GFLOPs per image: every grid configuration (grey), one series per axis
    (tokens, depth, width, each with the other two at full), the Pareto front and an
    early-exit curve per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    ax.scatter([r.gflops for r in grid], [100 * r.accuracy for r in grid], s=14, c="0.75",
               label="every (N, depth, width)", zorder=1)
    for (label, series), marker in zip(axes.items(), "os^", strict=True):
        series = sorted(series, key=lambda r: r.gflops)
        ax.plot([r.gflops for r in series], [100 * r.accuracy for r in series], marker=marker,
                ms=6, lw=1.6, label=label, zorder=3)
    for policy, style in zip(EXIT_POLICIES, ("--", ":"), strict=True):
        curve = sorted((r for r in rows if r.policy == policy), key=lambda r: r.gflops)
        ax.plot([r.gflops for r in curve], [100 * r.accuracy for r in curve], style, marker="D",
                ms=5, lw=1.6, label=f"early exit, {policy} (tau {curve[0].tau}..{curve[-1].tau})"
                if curve else policy, zorder=4)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.gflops)
    ax.step([r.gflops for r in front], [100 * r.accuracy for r in front], where="post", c="k",
            lw=1, alpha=0.6, zorder=2)
    ax.scatter([r.gflops for r in front], [100 * r.accuracy for r in front], s=90,
               facecolors="none", edgecolors="k", lw=1.2, label="Pareto front", zorder=5)
    ax.set_xlabel("GFLOPs per image (analytic)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
