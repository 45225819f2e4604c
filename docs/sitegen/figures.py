"""The learner figures, drawn at build time from the float64 NumPy oracle.

Every number in a figure comes from ``reference_numpy`` run on the tiny model of
``TUTORIAL`` (or on the bundled trained digits model, when this checkout has it), so
a figure cannot disagree with the code. ``render_all`` returns PNG bytes by file name;
the hook writes them into the built site under ``figures/`` (never committed).
"""

from __future__ import annotations

import io
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

import reference_numpy as ref  # noqa: E402
from reference_numpy import masks, rope  # noqa: E402

log = logging.getLogger("mkdocs.hooks.adaperceiver.figures")

# The tutorial's model: the oracle's tiny config (D=16, H=2, K=3 blocks, L=16 latents,
# 16x16 RGB images in 4x4 patches, 10 classes), random weights of seed 0.
TUTORIAL = {"seed": 0, "batch": 8, "image_seed": 0}
DPI = 110
BLUE, ORANGE, GREY, RED = "#1f77b4", "#ff7f0e", "#bbbbbb", "#d62728"


def tutorial_model():
    """(config, weights, images) of the tutorial model and its batch of random images."""
    config = ref.tiny_config()
    weights = ref.random_weights(config, seed=TUTORIAL["seed"])
    images = np.random.default_rng(TUTORIAL["image_seed"]).standard_normal(
        (TUTORIAL["batch"], config["in_channels"], config["img_size"], config["img_size"]))
    return config, weights, images


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def pipeline(config, weights, images) -> bytes:
    """patches -> read -> blocks -> write -> head, with the stage shapes of a real trace."""
    t = ref.trace(weights, config, images[:2], num_tokens=8)
    K = config["depth"]
    boxes = [
        ("images", "(B, C, H, W)", images[:2].shape),
        ("patches\nPATCH-1..3", "(B, M, D)", t.stages["patches"].shape),
        ("read\nREAD-1", "(B, N, D)", t.stages["read"].shape),
        (f"{K} blocks\nBLOCK-1..3", "(B, N, D)", t.stages[f"block_{K - 1}"].shape),
        ("write\nWRITE-1", "(B, 1, D)", t.stages["write"].shape),
        ("head\nHEAD-1", "(B, 1, C)", t.logits.shape),
    ]
    fig, ax = plt.subplots(figsize=(11, 2.6))
    ax.set_xlim(0, len(boxes) * 2)
    ax.set_ylim(0, 3)
    ax.axis("off")
    for i, (name, symbolic, shape) in enumerate(boxes):
        x = i * 2 + 0.15
        colour = ORANGE if i in (2, 3, 4) else BLUE
        ax.add_patch(Rectangle((x, 1.0), 1.7, 1.5, facecolor=colour, alpha=0.18,
                               edgecolor=colour, linewidth=1.5))
        ax.text(x + 0.85, 2.05, name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(x + 0.85, 1.3, symbolic, ha="center", va="center", fontsize=8.5)
        ax.text(x + 0.85, 0.65, str(tuple(shape)), ha="center", va="center", fontsize=8.5,
                family="monospace", color="#444")
        if i:
            ax.add_patch(FancyArrowPatch((x - 0.3, 1.75), (x, 1.75), arrowstyle="-|>",
                                         mutation_scale=12, color="#333"))
    ax.text(0.15, 0.15, f"shapes of a real oracle trace: B=2 images {images.shape[2]}x"
            f"{images.shape[3]}, P={config['patch_size']}, M={t.stages['patches'].shape[1]} "
            f"patches, D={config['embed_dim']}, N=8 latents, C={config['num_classes']}; "
            "orange: cost depends on N, not on the image size", fontsize=8, color="#444")
    return _png(fig)


def token_masks(config, weights, images) -> bytes:
    """Block mask next to causal mask, the prefix g drawn on both, with the oracle's
    measured prefix difference (MASK-3, MASK-4, MASK-6)."""
    N, g = 12, 4
    grans = masks.granularities(config["mask_token_grans"], N)
    shown = {"block": masks.block_mask(grans), "causal": masks.causal_mask(N)}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, (name, mask) in zip(axes, shown.items(), strict=False):
        cfg = {**config, "block_mask": name}
        big = ref.trace(weights, cfg, images[:2], num_tokens=N)
        small = ref.trace(weights, cfg, images[:2], num_tokens=g)
        diff = max(np.abs(big.stages[s][:, :g] - small.stages[s]).max()
                   for s in small.stages if s != "patches" and s != "write")
        ax.imshow(mask, cmap="Blues", vmin=-0.3, vmax=1.2)
        ax.add_patch(Rectangle((-0.5, -0.5), g, g, fill=False, edgecolor=RED, linewidth=2.5))
        ax.add_patch(Rectangle((g - 0.5, -0.5), N - g, g, facecolor=RED, alpha=0.12,
                               edgecolor="none"))
        ax.set_xticks(range(N))
        ax.set_yticks(range(N))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("key latent j")
        ax.set_ylabel("query latent i")
        title = (f"block mask, G(N) = {grans}" if name == "block" else "causal mask, j <= i")
        ax.set_title(f"{title}\nfirst {g} rows vs run with N={g}: max |diff| = {diff:.1e}",
                     fontsize=9)
    fig.suptitle(f"N = {N}: blue = may attend. Rows < {g} never see keys >= {g} (red band "
                 "empty), so the first g latents are the N = g run (MASK-6)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def matryoshka(config, weights, images) -> bytes:
    """Which fc1 rows, fc2 columns and biases a width m keeps (MAT-1)."""
    D, r = config["embed_dim"], config["ffn_ratio"]
    F, m = int(D * r), 8
    h = int(m * r)
    fc1 = np.abs(weights["blocks.0.ffn.fc1.weight"])  # (F, D)
    fc2 = np.abs(weights["blocks.0.ffn.fc2.weight"])  # (D, F)
    fig, axes = plt.subplots(1, 4, figsize=(11, 4),
                             gridspec_kw={"width_ratios": [D, 2, F, 2]})
    panels = [
        (axes[0], fc1, f"fc1.weight (F={F}, D={D})\nkeeps rows :{h}", (0, h)),
        (axes[1], np.abs(weights["blocks.0.ffn.fc1.bias"])[:, None], f"fc1.bias\n:{h}", (0, h)),
        (axes[2], fc2, f"fc2.weight (D={D}, F={F}): keeps columns :{h}", (1, h)),
        (axes[3], np.abs(weights["blocks.0.ffn.fc2.bias"])[:, None], "fc2.bias\nall kept",
         None),
    ]
    for ax, values, title, keep in panels:
        ax.imshow(values, cmap="viridis", aspect="auto")
        if keep is not None:
            axis, n = keep
            dropped = np.zeros(values.shape, dtype=bool)
            if axis == 0:
                dropped[n:, :] = True
            else:
                dropped[:, n:] = True
            ax.imshow(np.where(dropped, 1.0, np.nan), cmap="Greys", vmin=0, vmax=1.3, alpha=0.8,
                      aspect="auto")
        ax.set_title(title, fontsize=8.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Matryoshka width m = {m} keeps h = int(m * ffn_ratio) = int({m} * {r}) = {h}"
                 f" of F = {F} hidden units in every block (grey: unused; MAT-1)", fontsize=9.5)
    fig.tight_layout()
    return _png(fig)


def rope_ntk(config, weights, images) -> bytes:
    """Angles of RoPE frequency pairs by position, without and with NTK scaling (ROPE-1..3)."""
    hd, L, theta = config["embed_dim"] // config["num_heads"], config["max_latent_tokens"], \
        config["rope_theta"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, colour in zip(range(hd // 2), (BLUE, ORANGE, "#2ca02c", "#9467bd"), strict=False):
        for N, style in ((L, "-"), (2 * L, "--")):
            angles = rope.rope_angles(N, hd, theta, L)[:, i]
            axes[0].plot(np.arange(N), angles, style, color=colour,
                         label=f"pair {i}, N={N}" + (" (NTK, lambda=2)" if N > L else ""))
    axes[0].axvline(L - 0.5, color=GREY, linestyle=":")
    axes[0].set_xlabel("latent position p")
    axes[0].set_ylabel("angle p * f_i / lambda (rad)")
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].legend(fontsize=7, ncol=2, loc="upper left")
    axes[0].set_title(f"hd = {hd}, theta = {theta:g}, L = {L}", fontsize=9)
    Ns = np.arange(1, 4 * L + 1)
    f0 = [rope.rope_frequencies(hd, int(n), theta, L)[1] for n in Ns]
    axes[1].plot(Ns, f0, color=ORANGE)
    axes[1].axvline(L, color=GREY, linestyle=":")
    axes[1].set_xlabel("number of latents N of the call")
    axes[1].set_ylabel("frequency f_1 / lambda")
    axes[1].set_title("NTK: above L every frequency is divided by N / L", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def early_exit(config, weights, images, tau: float) -> bytes:
    """Per-sample confidence after each block; exit depths of both policies (EXIT-1..3)."""
    K = config["depth"]
    conf = np.stack([ref.model.confidence(ref.classify(weights, config, images, depth=d))
                     for d in range(1, K + 1)], axis=1)  # (B, K)
    batch = ref.trace(weights, config, images, depth_tau=tau).exit_depths
    single = ref.trace(weights, config, images, depth_tau=tau, exit_policy="per_sample")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    depths = np.arange(1, K + 1)
    for ax, exits, name in ((axes[0], batch, "batch_mean"),
                            (axes[1], single.exit_depths, "per_sample")):
        for b in range(conf.shape[0]):
            ax.plot(depths, conf[b], color=GREY, linewidth=1)
            ax.plot(exits[b], conf[b, exits[b] - 1], "o", color=BLUE, markersize=6)
        ax.plot(depths, conf.mean(axis=0), color=ORANGE, linewidth=2.5, label="batch mean")
        ax.axhline(tau, color=RED, linestyle="--", label=f"tau = {tau}")
        ax.set_xticks(depths)
        ax.set_xlabel("block e")
        ax.set_title(f'exit_policy="{name}": exit depths {exits.tolist()}', fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("confidence max softmax")
    fig.suptitle(f"{conf.shape[0]} images, one line each; dot = where the sample exits",
                 fontsize=9.5)
    fig.tight_layout()
    return _png(fig)


def bundled_tradeoff() -> bytes | None:
    """Accuracy against compute of the bundled digits model over (depth, tokens), or
    None when this checkout has no bundled model."""
    try:
        from adaperceiver.digits import BUNDLED_MODEL, load_digits
    except ImportError:
        log.info("figures: adaperceiver.digits is absent; the trade-off figure is skipped")
        return None
    if not BUNDLED_MODEL.is_dir():
        log.info("figures: no bundled model at %s; the trade-off figure is skipped",
                 BUNDLED_MODEL)
        return None
    config, weights = ref.load_checkpoint(str(BUNDLED_MODEL))
    images, labels = load_digits("test")
    grans = masks.granularities(config["mask_token_grans"], config["max_latent_tokens"])
    K = config["depth"]
    anytime = getattr(ref, "anytime", None)
    if anytime is not None:  # one pass for the whole (depth x granularity) grid
        grid = anytime(weights, config, images.astype(np.float64))
        grans, logits = list(grid.granularities), grid.logits  # (B, K, G, C)
    else:
        logits = np.stack([np.stack([ref.classify(weights, config, images.astype(np.float64),
                                                  num_tokens=g, depth=d)[:, 0]
                                     for g in grans], axis=1)
                           for d in range(1, K + 1)], axis=1)  # (B, K, G, C)
    accuracy = (logits.argmax(-1) == labels[:, None, None]).mean(axis=0)  # (K, G)
    cost = np.array([[d * g for g in grans] for d in range(1, K + 1)])  # latent-blocks
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, g in enumerate(grans):
        ax.plot(cost[:, j], accuracy[:, j] * 100, "o-", label=f"N = {g}")
    ax.set_xscale("log")
    ax.set_xlabel("compute: depth x latents (latent-blocks per image)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"bundled digits model, {len(labels)} test images; one line per N, "
                 f"points = depth 1..{K}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


# The threshold of the early-exit figure and of the tutorial's "try it": chosen so that
# the two policies give different exit depths on the tutorial batch (tests/docs check it).
EXIT_TAU = 0.36


def render_all() -> dict[str, bytes]:
    """File name -> PNG bytes of every figure this checkout can draw."""
    config, weights, images = tutorial_model()
    figures = {
        "pipeline.png": pipeline(config, weights, images),
        "masks.png": token_masks(config, weights, images),
        "matryoshka.png": matryoshka(config, weights, images),
        "rope.png": rope_ntk(config, weights, images),
        "early-exit.png": early_exit(config, weights, images, EXIT_TAU),
    }
    tradeoff = bundled_tradeoff()
    if tradeoff is not None:
        figures["tradeoff.png"] = tradeoff
    return figures
