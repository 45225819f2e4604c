"""The site's figures, drawn at build time from the float64 NumPy oracle.

Every number in a figure comes from ``reference_numpy``: the tutorial figures from the
tiny model of ``TUTORIAL``, the trade-off figure from the bundled trained model on the
bundled test digits (``adaperceiver/digits.py``, loaded by file path so that no torch
import happens). The docs build therefore needs no torch. ``render_all`` returns SVG
bytes by file name; the hook writes them under ``figures/`` (never committed). A figure
that cannot be drawn raises ``FigureError``, which fails the build: there is no
placeholder.

Readability (issue "documentation, third pass"): the palette is Okabe and Ito's
colour-blind-safe one, every text is at least ``MIN_FONT_PT`` points and a figure is at
most ``MAX_WIDTH_IN`` inches wide (``check_readable`` enforces both on every figure), so
that on a phone, where the stylesheet shows a figure at least 600 CSS px wide in a
horizontally scrolling frame, text is at least about 11 px.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import reference_numpy as ref  # noqa: E402
from reference_numpy import masks, rope  # noqa: E402

from . import ROOT  # noqa: E402, F401  (importing the package puts this checkout on sys.path)

# The tutorial's model: the oracle's tiny config (D=16, H=2, K=3 blocks, L=16 latents,
# 16x16 RGB images in 4x4 patches, 10 classes), random weights of seed 0.
TUTORIAL = {"seed": 0, "batch": 8, "image_seed": 0}
# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common
# colour-vision deficiency.
BLUE, ORANGE, GREEN, VERMILLION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
SKY, PURPLE, GREY, BLACK = "#56B4E9", "#CC79A7", "#999999", "#000000"
LINE_COLOURS = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY)
MIN_FONT_PT = 11
MAX_WIDTH_IN = 8.0
plt.rcParams.update({"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12,
                     "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 11,
                     "figure.titlesize": 12, "svg.hashsalt": "adaperceiver",
                     "svg.fonttype": "path"})


class FigureError(RuntimeError):
    """A figure could not be drawn; the docs build fails with this message."""


@dataclass(frozen=True)
class Facts:
    """Numbers the pages state about the figures (tests/docs check the prose against them)."""

    exit_depths_batch_mean: list[int]
    exit_depths_per_sample: list[int]
    prefix_gap: dict[str, float]  # mask name -> max |diff| of the prefix run (MASK-6)


def tutorial_model():
    """(config, weights, images) of the tutorial model and its batch of random images."""
    config = ref.tiny_config()
    weights = ref.random_weights(config, seed=TUTORIAL["seed"])
    images = np.random.default_rng(TUTORIAL["image_seed"]).standard_normal(
        (TUTORIAL["batch"], config["in_channels"], config["img_size"], config["img_size"]))
    return config, weights, images


def check_readable(fig, name: str) -> None:
    """Raise FigureError when a visible text is under MIN_FONT_PT or the figure is wider
    than MAX_WIDTH_IN."""
    width = fig.get_size_inches()[0]
    if width > MAX_WIDTH_IN:
        raise FigureError(f"figure {name}: {width:.1f} in wide, at most {MAX_WIDTH_IN} allowed")
    small = [t.get_text()[:40] for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT]
    if small:
        raise FigureError(f"figure {name}: text under {MIN_FONT_PT} pt: {small[:3]}")


def _svg(fig, name: str) -> bytes:
    check_readable(fig, name)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", facecolor="white",
                metadata={"Date": None})  # no date: the same build gives the same bytes
    plt.close(fig)
    return buffer.getvalue()


def pipeline(config, weights, images) -> bytes:
    """patches -> read -> blocks -> write -> head, with the stage shapes of a real trace."""
    t = ref.trace(weights, config, images[:2], num_tokens=8)
    K = config["depth"]
    boxes = [
        ("images", "(B, C_in, H, W)", images[:2].shape, BLUE),
        ("patches", "(B, M, D)", t.stages["patches"].shape, BLUE),
        ("read", "(B, N, D)", t.stages["read"].shape, VERMILLION),
        (f"{K} blocks", "(B, N, D)", t.stages[f"block_{K - 1}"].shape, ORANGE),
        ("write", "(B, 1, D)", t.stages["write"].shape, ORANGE),
        ("head", "(B, 1, C)", t.logits.shape, BLUE),
    ]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.set_xlim(0, 3 * 2.6)
    ax.set_ylim(-0.9, 5.2)
    ax.axis("off")
    for i, (name, symbolic, shape, colour) in enumerate(boxes):
        x, y = (i % 3) * 2.6 + 0.1, 3.0 if i < 3 else 0.4
        ax.add_patch(Rectangle((x, y), 2.0, 1.9, facecolor=colour, alpha=0.15,
                               edgecolor=colour, linewidth=2))
        ax.text(x + 1.0, y + 1.45, name, ha="center", va="center", weight="bold")
        ax.text(x + 1.0, y + 0.9, symbolic, ha="center", va="center", fontsize=11)
        ax.text(x + 1.0, y + 0.4, str(tuple(shape)), ha="center", va="center", fontsize=11,
                family="monospace")
        if i % 3:
            ax.add_patch(FancyArrowPatch((x - 0.5, y + 0.95), (x, y + 0.95), arrowstyle="-|>",
                                         mutation_scale=14, color=BLACK))
    ax.add_patch(FancyArrowPatch((2 * 2.6 + 1.1, 3.0), (0.1 + 1.0, 2.3), arrowstyle="-|>",
                                 mutation_scale=14, color=BLACK, connectionstyle="arc3,rad=-0.1"))
    M = t.stages["patches"].shape[1]
    ax.text(0.1, -0.6, f"B=2 images {images.shape[2]}x{images.shape[3]}, P="
            f"{config['patch_size']}: M={M} patches, D={config['embed_dim']}, N=8, "
            f"C={config['num_classes']}.\nCost: read grows with N x M (red); blocks and "
            "write with N only (orange)", fontsize=11)
    return _svg(fig, "pipeline")


# Attend / masked cells of the mask figure: dark blue against near-white.
_MASK_CMAP = ListedColormap(["#f4f4f4", BLUE])


def token_masks(config, weights, images, facts: dict) -> bytes:
    """Block mask next to causal mask, the prefix g drawn on both, with the oracle's
    measured prefix difference (MASK-3, MASK-4, MASK-6)."""
    N, g = 12, 4
    grans = masks.granularities(config["mask_token_grans"], N)
    shown = {"block": masks.block_mask(grans), "causal": masks.causal_mask(N)}
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.9))
    gaps = {}
    for ax, (name, mask) in zip(axes, shown.items(), strict=True):
        cfg = {**config, "block_mask": name}
        big = ref.trace(weights, cfg, images[:2], num_tokens=N)
        small = ref.trace(weights, cfg, images[:2], num_tokens=g)
        gaps[name] = float(max(np.abs(big.stages[s][:, :g] - small.stages[s]).max()
                               for s in small.stages if s not in ("patches", "write")))
        ax.imshow(mask, cmap=_MASK_CMAP, vmin=0, vmax=1)
        ax.add_patch(Rectangle((g - 0.5, -0.5), N - g, g, facecolor="none",
                               edgecolor=VERMILLION, hatch="///", linewidth=2))
        ax.add_patch(Rectangle((-0.5, -0.5), g, g, fill=False, edgecolor=ORANGE, linewidth=3))
        ax.set_xticks(range(0, N, 2))
        ax.set_yticks(range(0, N, 2))
        ax.set_xlabel("key latent j")
        ax.set_ylabel("query latent i")
        title = f"block, G(N)={grans}" if name == "block" else "causal, j <= i"
        ax.set_title(f"{title}\nrun N={g} vs first {g} rows:\nmax |diff| = {gaps[name]:.0e}")
    fig.suptitle(f"N={N}. Dark blue: may attend; light: masked. Hatched: rows < {g} x keys >= "
                 f"{g},\nall light, so the first {g} latents are the N={g} run (MASK-6)")
    fig.tight_layout()
    facts["prefix_gap"] = gaps
    return _svg(fig, "masks")


def matryoshka(config, weights, images) -> bytes:
    """Which fc1 rows, fc2 columns and biases a width m keeps (MAT-1)."""
    D, r = config["embed_dim"], config["ffn_ratio"]
    F, m = int(D * r), 8
    h = int(m * r)
    fc1 = np.abs(weights["blocks.0.ffn.fc1.weight"])  # (F, D)
    fc2 = np.abs(weights["blocks.0.ffn.fc2.weight"])  # (D, F)
    fig, axes = plt.subplots(1, 2, figsize=(8, 5.0), gridspec_kw={"width_ratios": [D, F]})
    panels = [
        (axes[0], fc1, f"fc1.weight (F={F}, D={D}):\nkeeps rows :{h}", 0),
        (axes[1], fc2, f"fc2.weight (D={D}, F={F}):\nkeeps columns :{h}", 1),
    ]
    for ax, values, title, axis in panels:
        ax.imshow(values, cmap="cividis", aspect="auto")
        dropped = np.zeros(values.shape, dtype=bool)
        if axis == 0:
            dropped[h:, :] = True
        else:
            dropped[:, h:] = True
        ax.imshow(np.where(dropped, 1.0, np.nan), cmap="Greys", vmin=0, vmax=1.3, alpha=0.85,
                  aspect="auto")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"width m={m}: h = int(m * r) = int({m} * {r}) = {h} of F={F} hidden units\n"
                 f"kept in every block (grey: unused). fc1.bias keeps :{h}, fc2.bias all (MAT-1)")
    fig.tight_layout()
    return _svg(fig, "matryoshka")


def rope_scaling(config, weights, images) -> bytes:
    """Angles of RoPE frequency pairs by position without and with the long-sequence
    scaling (linear position interpolation, ROPE-1..3), on linear axes."""
    hd, L, theta = config["embed_dim"] // config["num_heads"], config["max_latent_tokens"], \
        config["rope_theta"]
    fig, axes = plt.subplots(2, 1, figsize=(8, 7.4))
    lines = []
    for i, colour in zip(range(min(hd // 2, 2)), LINE_COLOURS, strict=False):
        for N, style in ((L, "-"), (2 * L, "--")):
            angles = rope.rope_angles(N, hd, theta, L)[:, i]
            (line,) = axes[0].plot(np.arange(N), angles, style, color=colour, linewidth=2,
                                   label=f"pair i={i}, N={N}" + (", lambda=2" if N > L else ""))
            lines.append(line)
    axes[0].axvline(L - 0.5, color=GREY, linestyle=":")
    axes[0].set_xlabel("latent position p")
    axes[0].set_ylabel("angle p f_i / lambda (rad)")
    axes[0].set_title(f"hd={hd}, theta={theta:g}, L={L}: dashed = N=2L, every angle halved")
    axes[0].legend(handles=lines, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    Ns = np.arange(1, 4 * L + 1)
    f1 = [rope.rope_frequencies(hd, int(n), theta, L)[1] for n in Ns]
    axes[1].plot(Ns, f1, color=ORANGE, linewidth=2)
    axes[1].axvline(L, color=GREY, linestyle=":")
    axes[1].set_xlabel("number of latents N of the call")
    axes[1].set_ylabel("f_1 / lambda")
    axes[1].set_title("above L every frequency is divided by N / L")
    fig.tight_layout()
    return _svg(fig, "rope")


def early_exit(config, weights, images, tau: float, facts: dict) -> bytes:
    """Per-sample confidence after each block; exit depths of both policies (EXIT-1..3)."""
    K = config["depth"]
    conf = np.stack([ref.model.confidence(ref.classify(weights, config, images, depth=d))
                     for d in range(1, K + 1)], axis=1)  # (B, K)
    batch = ref.trace(weights, config, images, depth_tau=tau).exit_depths
    single = ref.trace(weights, config, images, depth_tau=tau,
                       exit_policy="per_sample").exit_depths
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.8), sharey=True)
    depths = np.arange(1, K + 1)
    for ax, exits, name in ((axes[0], batch, "batch_mean"), (axes[1], single, "per_sample")):
        for b in range(conf.shape[0]):
            ax.plot(depths, conf[b], color=GREY, linewidth=1)
            ax.plot(exits[b], conf[b, exits[b] - 1], "o", color=BLUE, markersize=7)
        ax.plot(depths, conf.mean(axis=0), color=ORANGE, linewidth=3, label="batch mean")
        ax.axhline(tau, color=VERMILLION, linestyle="--", linewidth=2, label=f"tau={tau}")
        ax.set_xticks(depths)
        ax.set_xlabel("block e")
        ax.set_title(f'"{name}"\nexits {exits.tolist()}')
        ax.legend(loc="lower right")
    axes[0].set_ylabel("confidence (max softmax)")
    fig.suptitle(f"{conf.shape[0]} images, one grey line each; dot = where the sample exits")
    fig.tight_layout()
    facts["exit_depths_batch_mean"] = batch.tolist()
    facts["exit_depths_per_sample"] = single.tolist()
    return _svg(fig, "early-exit")


TRADEOFF_CANVASES = 718  # the first 718 test canvases: each of the 359 test digits twice


def bundled_tradeoff() -> bytes:
    """Test accuracy against compute of the bundled cluttered-digits model over (depth,
    tokens), from one oracle anytime pass (ANY-1) on the first test canvases. Imports
    ``adaperceiver.cluttered`` and ``adaperceiver.digits``, which need no torch."""
    from adaperceiver import cluttered
    from adaperceiver.digits import CLUTTERED_MODEL

    if not CLUTTERED_MODEL.is_dir():
        raise FigureError(f"tradeoff figure: no bundled model at {CLUTTERED_MODEL}")
    config, weights = ref.load_checkpoint(str(CLUTTERED_MODEL))
    images, labels = (a[:TRADEOFF_CANVASES] for a in cluttered.test_set())
    grid = ref.anytime(weights, config, images.astype(np.float64))
    grans, K = list(grid.granularities), config["depth"]
    accuracy = (grid.logits.argmax(-1) == labels[:, None, None]).mean(axis=0)  # (K, G)
    cost = np.array([[d * g for g in grans] for d in range(1, K + 1)])  # latent-blocks
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for j, (g, colour) in enumerate(zip(grans, LINE_COLOURS, strict=False)):
        ax.plot(cost[:, j], accuracy[:, j] * 100, "o-", color=colour, linewidth=2,
                label=f"N={g}")
    ax.set_xscale("log")
    ax.set_xlabel("compute: depth x latents (latent-blocks per image)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"bundled cluttered-digits model, {len(labels)} test canvases;\none line "
                 f"per N, points = depth 1..{K}")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _svg(fig, "tradeoff")


def _bundled_metadata() -> dict:
    """The bundled cluttered-digits model's adaperceiver.json (written by ``adaperceiver
    train``: the run's curves and the test count of every budget)."""
    from adaperceiver.digits import CLUTTERED_MODEL

    path = CLUTTERED_MODEL / "adaperceiver.json"
    try:
        meta = json.loads(path.read_text())
        return {"log": meta["training"]["log"], "training": meta["training"],
                "accuracy": meta["test_accuracy"]}
    except (OSError, ValueError, KeyError) as e:
        raise FigureError(f"training figures: cannot read the run recorded in {path}: "
                          f"{e!r}") from e


def training_curves() -> bytes:
    """The bundled model's training run as ``adaperceiver train`` recorded it: the mean
    joint loss per window of steps, and the full budget's accuracy on the monitored test
    canvases at each evaluation."""
    meta = _bundled_metadata()
    log, window = meta["log"], meta["log"]["loss_window"]
    steps, loss = np.asarray(log["loss"]).T  # (W, 2) -> last step, mean loss of each window
    monitored = np.asarray(log["full_budget_accuracy"])  # (E, 2): step, accuracy
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.8))
    left.plot(steps, loss, color=BLUE, linewidth=2)
    left.axhline(2 * np.log(10), color=GREY, linestyle="--", linewidth=1.5)
    left.text(steps[-1], 2 * np.log(10) - 0.15, "chance: 2 ln 10", ha="right", va="top")
    left.set_xlabel("step")
    left.set_ylabel(f"joint loss (mean of {window} steps)")
    left.set_ylim(0, None)
    right.plot(monitored[:, 0], monitored[:, 1] * 100, "o-", color=VERMILLION, linewidth=2)
    right.axhline(10, color=GREY, linestyle="--", linewidth=1.5)
    right.text(monitored[-1, 0], 12, "chance: 10 %", ha="right", va="bottom")
    right.set_ylim(0, 100)
    right.set_xlabel("step")
    right.set_ylabel("full budget, test accuracy (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"one run of `{meta['training']['command'].split(' --out')[0]}` "
                 f"(seed {meta['training']['seed']}); accuracy on {log['monitored']}")
    fig.tight_layout()
    return _svg(fig, "training-curves")


def training_budgets() -> bytes:
    """Test accuracy of every fixed budget of the bundled model with its 95 % Wilson
    interval, from the counts ``adaperceiver train`` recorded: against depth, one line
    per N, at the widest FFN (solid) and the narrowest (dashed)."""
    from adaperceiver.stats import wilson_interval

    acc = _bundled_metadata()["accuracy"]
    n, budgets = acc["num_images"], {}
    for name, correct in acc["correct"].items():
        match = re.fullmatch(r"N=(\d+) depth=(\d+) width=(\d+)", name)
        if match:  # exit rows are named by tau and policy
            budgets[tuple(int(v) for v in match.groups())] = correct
    grans, depths, widths = (sorted({key[i] for key in budgets}) for i in range(3))
    fig, ax = plt.subplots(figsize=(8, 5.6))
    for g, colour in zip(grans, LINE_COLOURS, strict=False):
        for width, style in ((widths[-1], "o-"), (widths[0], "s--")):
            counts = [budgets[g, d, width] for d in depths]
            low, high = np.array([wilson_interval(k, n) for k in counts]).T * 100
            value = np.array(counts) / n * 100
            ax.errorbar(depths, value, yerr=[value - low, high - value], fmt=style,
                        color=colour, capsize=3, linewidth=2 if style == "o-" else 1.2,
                        label=f"N={g}, width {width}")
    ax.set_xlabel("depth (blocks run)")
    ax.set_ylabel("test accuracy (%), 95 % interval")
    ax.set_title(f"every fixed budget of the bundled model, {n} test canvases")
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=len(grans) // 2 + 1,
               fontsize=11, columnspacing=1.0)
    fig.tight_layout(rect=(0, 0.2, 1, 1))  # the legend's two rows below the axes
    return _svg(fig, "training-budgets")


# The threshold of the early-exit figure and of the tutorial's "try it": chosen so that
# the two policies give different exit depths on the tutorial batch (tests/docs check it).
EXIT_TAU = 0.36
FIGURES = ("pipeline.svg", "masks.svg", "matryoshka.svg", "rope.svg", "early-exit.svg",
           "tradeoff.svg", "training-curves.svg", "training-budgets.svg")


def render_all() -> tuple[dict[str, bytes], Facts]:
    """File name -> SVG bytes of every figure, and the numbers the pages state about
    them. Raises FigureError (failing the build) when one cannot be drawn."""
    config, weights, images = tutorial_model()
    facts: dict = {}
    figures = {
        "pipeline.svg": pipeline(config, weights, images),
        "masks.svg": token_masks(config, weights, images, facts),
        "matryoshka.svg": matryoshka(config, weights, images),
        "rope.svg": rope_scaling(config, weights, images),
        "early-exit.svg": early_exit(config, weights, images, EXIT_TAU, facts),
        "tradeoff.svg": bundled_tradeoff(),
        "training-curves.svg": training_curves(),
        "training-budgets.svg": training_budgets(),
    }
    assert tuple(figures) == FIGURES
    return figures, Facts(**facts)
