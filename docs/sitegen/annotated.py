"""The annotated oracle: each stage's source beside its clauses, with its outputs on a real
bundled test canvas captured when the site is built (issue "documentation, third pass").

A page writes ``<!-- oracle-stage: KEY -->`` for a key of ``STAGES``; ``fill`` replaces
it with the clause ids the stage implements, the source of the oracle functions that
implement it (read from ``reference_numpy`` with ``inspect`` at build time, so it cannot
drift from the code), and what the stage computes on test canvas ``CANVAS_INDEX`` of
the bundled cluttered-digits task, run through the bundled model loaded by the oracle's
own ``load_checkpoint``. ``capture`` runs the stages one call at a time exactly as
``reference_numpy.trace`` does; tests/docs/test_annotated.py checks its numbers against
``trace``. ``figures`` draws the stage figures (SVG, with ``figures``' palette and
readability rules). No torch is imported.
"""

from __future__ import annotations

import functools
import inspect
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np

import reference_numpy as ref
from reference_numpy import masks, model, ops, preprocess, rope

from . import ROOT
from .figures import BLACK, VERMILLION, FigureError, _svg

CANVAS_INDEX = 20  # test canvas 20: a "4" that one block gets wrong (a "6") and two get right
EXIT_TAU = 0.8  # the early-exit threshold the exit stage shows
PREFIX_G = 4  # the smaller run of the prefix-property check (MASK-6)
SHOWN_LATENTS = (0, 1, 8, 15)  # latents whose read attention the read figure shows


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: its title, the clauses it implements (each named in a
    docstring of its functions) and the oracle functions (dotted names under
    ``reference_numpy``) that implement them."""

    title: str
    clauses: tuple[str, ...]
    sources: tuple[str, ...]
    figure: str | None = None


STAGES = {
    "input": Stage("Input: a bundled canvas", ("PRE-4",), ("preprocess.digit_counts",)),
    "patches": Stage("Patch embedding", ("PATCH-1", "PATCH-2", "PATCH-3"),
                     ("model.embed_patches", "ops.patch_embed"), "annotated-patches.svg"),
    "rope": Stage("RoPE", ("ROPE-1", "ROPE-2", "ROPE-3"),
                  ("rope.rope_frequencies", "rope.rope_angles", "rope.apply_rope")),
    "read": Stage("The read", ("LAT-1", "READ-1", "ATTN-2"),
                  ("model.read", "model.cross_attention"), "annotated-read.svg"),
    "mask": Stage("The block mask", ("MASK-1", "MASK-2", "MASK-3"),
                  ("masks.token_mask", "masks.granularities", "masks.block_mask")),
    "block": Stage("A block with Matryoshka FFN slicing",
                   ("BLOCK-1", "BLOCK-2", "BLOCK-3", "MAT-1", "MAT-3"),
                   ("model.block", "model._mlp", "model.ffn_hidden")),
    "write": Stage("Write and head", ("LAT-2", "WRITE-1", "HEAD-1", "OUT-1"),
                   ("model.write", "model.output_head")),
    "exit": Stage("Early exit", ("DEPTH-1", "EXIT-1", "EXIT-2", "EXIT-3", "EXIT-4"),
                  ("model.confidence", "model.run_blocks"), "annotated-exit.svg"),
}
FIGURES = tuple(s.figure for s in STAGES.values() if s.figure)


def oracle_function(name: str) -> Callable:
    """``reference_numpy.<name>`` for a dotted name such as ``model.read``."""
    return functools.reduce(getattr, name.split("."), ref)


def source(name: str) -> tuple[str, int, str]:
    """(repository path, first line, source text) of the oracle function ``name``."""
    function = oracle_function(name)
    lines, first = inspect.getsourcelines(function)
    path = inspect.getsourcefile(function)
    return posixpath.relpath(path, ROOT).replace("\\", "/"), first, "".join(lines)


def _array(values, digits: int = 4) -> str:
    return np.array2string(np.asarray(values), precision=digits, floatmode="maxprec",
                           suppress_small=False, max_line_width=76, separator=", ")


@dataclass
class Capture:
    """What the stages computed on the canvas: text lines per stage, and the arrays the
    figures draw."""

    label: int
    lines: dict[str, list[str]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def canvas() -> tuple[np.ndarray, int]:
    """Test canvas ``CANVAS_INDEX`` of the bundled task: (40, 40) uint8 ink counts, label.
    Drawn alone with the test set's generator (canvas i holds test digit i mod 359)."""
    from adaperceiver import cluttered

    pool, labels = cluttered.load_digit_counts("test")
    index = np.array([CANVAS_INDEX])
    canvases, label = cluttered.make_canvases(pool, labels, cluttered.TEST_SEED, index,
                                              index % len(pool))
    return canvases[0], int(label[0])


def bundled_model():
    """(config, float64 weights) of the bundled cluttered-digits model (oracle loader)."""
    from adaperceiver.digits import CLUTTERED_MODEL

    if not CLUTTERED_MODEL.is_dir():
        raise FigureError(f"annotated oracle: no bundled model at {CLUTTERED_MODEL}")
    return ref.load_checkpoint(str(CLUTTERED_MODEL))


def read_attention(weights, config, patches: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Attention weights (B, H, N, M) of the read (READ-1, ATTN-1, ATTN-2):
    softmax(q_h k_h^T / sqrt(hd)) with q = RoPE(q(snk_norm(latent token))) and
    k = k(src_norm(patches)), the probabilities ``model.read`` multiplies v by."""
    B, _, D = patches.shape
    N, H = angles.shape[0], config["num_heads"]
    w = weights
    latents = np.broadcast_to(w["process_latents.token"], (B, N, D))
    sink = ops.layer_norm(latents, w["read_head.snk_norm.weight"], w["read_head.snk_norm.bias"])
    src = ops.layer_norm(patches, w["read_head.src_norm.weight"], w["read_head.src_norm.bias"])
    q = rope.apply_rope(ops.linear(sink, w["read_head.cattn.q.weight"],
                                   w.get("read_head.cattn.q.bias")), angles, H)
    k = ops.linear(src, w["read_head.cattn.k.weight"], w.get("read_head.cattn.k.bias"))
    qh, kh = ops.split_heads(q, H), ops.split_heads(k, H)  # (B, H, N|M, hd)
    return ops.softmax(qh @ kh.transpose(0, 1, 3, 2) / np.sqrt(qh.shape[-1]))  # (B, H, N, M)


@functools.cache
def capture() -> Capture:
    """Run the bundled model on the canvas stage by stage (the calls of
    ``reference_numpy.trace``) and record what each stage shows."""
    counts, label = canvas()
    config, weights = bundled_model()
    out = Capture(label=label)
    lines = out.lines
    K, D, H, L = config["depth"], config["embed_dim"], config["num_heads"], \
        config["max_latent_tokens"]
    hd, P, N = D // H, config["patch_size"], L
    images = preprocess.digit_counts(counts)[None, None]  # (40, 40) -> (1, 1, 40, 40)
    out.arrays["images"] = images
    lines["input"] = [
        f"canvas {CANVAS_INDEX} of the test set: label {label}, ink counts "
        f"{counts.dtype} {counts.shape}, {int(counts.min())}..{int(counts.max())}",
        f"images = digit_counts(canvas)[None, None]  # {images.shape}, "
        f"values {images.min():g}..{images.max():g}",
    ]

    patches = model.embed_patches(weights, config, images)  # (1, M, D)
    M = patches.shape[1]
    norms = np.linalg.norm(patches[0], axis=-1)  # (M,)
    out.arrays["patch_norms"] = norms
    side = config["img_size"] // P
    lines["patches"] = [
        f"patches = embed_patches(weights, config, images)  # {patches.shape}",
        f"M = ({images.shape[2]}/{P}) x ({images.shape[3]}/{P}) = {M} patches, D = {D}",
        f"pos_embed grid {side} x {side} = the image's grid: used as stored (PATCH-2)",
        f"use_embed_ffn = {config['use_embed_ffn']}: no embed FFN (PATCH-3)",
        f"patches[0, 0, :4] = {_array(patches[0, 0, :4])}",
        f"|patch token|: min {norms.min():.4f} (patch {int(norms.argmin())}), "
        f"max {norms.max():.4f} (patch {int(norms.argmax())})",
    ]

    freqs = rope.rope_frequencies(hd, N, config["rope_theta"], L)
    angles = rope.rope_angles(N, hd, config["rope_theta"], L)  # (N, hd/2)
    long_freqs = rope.rope_frequencies(hd, 2 * L, config["rope_theta"], L)
    probe = np.random.default_rng(0).standard_normal((1, N, D))
    rotated = rope.apply_rope(probe, angles, H)
    pair_norm = (lambda x: np.linalg.norm(x.reshape(1, N, D // 2, 2), axis=-1))  # noqa: E731
    lines["rope"] = [
        f"hd = D / H = {D} / {H} = {hd}: {hd // 2} frequencies, theta = {config['rope_theta']}",
        f"f = rope_frequencies({hd}, N={N}, ...)  # theta^(-2i / hd)",
        f"  = {_array(freqs, 4)}",
        f"angles = rope_angles(N={N}, ...)  # {angles.shape}",
        f"angles[1, :3] = {_array(angles[1, :3])}",
        f"N = 2L = {2 * L}: lambda = N / L = 2, f[:3] / lambda = {_array(long_freqs[:3], 4)}",
        f"rotation keeps each pair's length: max change "
        f"{np.abs(pair_norm(rotated) - pair_norm(probe)).max():.1e}",
    ]

    latents = model.read(weights, config, patches, N, angles)  # (1, N, D)
    attention = read_attention(weights, config, patches, angles)[0].mean(axis=0)  # (N, M)
    out.arrays["read_attention"] = attention
    lines["read"] = [
        f"latents = read(weights, config, patches, N={N}, angles)  # {latents.shape}",
        f"before the read: all {N} rows = process_latents.token",
        f"after it rows 0 and 1 differ by {np.abs(latents[0, 0] - latents[0, 1]).max():.4f} "
        "(RoPE on q only)",
        f"read attention, heads averaged: {attention.shape}, each row sums to 1",
        f"most attended patch of latents {SHOWN_LATENTS}: "
        f"{[int(attention[n].argmax()) for n in SHOWN_LATENTS]}",
        f"latents[0, 0, :4] = {_array(latents[0, 0, :4])}",
    ]

    mask = masks.token_mask(config["attn_layer"], config["block_mask"], N,
                            config["mask_token_grans"])  # (N, N)
    grans = masks.granularities(config["mask_token_grans"], N)
    hidden = model.ffn_hidden(config, None, 1)
    full = ref.trace(weights, config, images, num_tokens=N)
    small = ref.trace(weights, config, images, num_tokens=PREFIX_G)
    gap = max(np.abs(full.stages[f"block_{d}"][:, :PREFIX_G]
                     - small.stages[f"block_{d}"]).max() for d in range(K))
    lines["mask"] = [
        f"attn_layer = {config['attn_layer']!r}, block_mask = {config['block_mask']!r}",
        f"G({N}) = granularities({config['mask_token_grans']}, {N}) = {grans}",
        f"mask = token_mask(...)  # {mask.shape} bool, {int(mask.sum())} of {mask.size} "
        "may attend",
        "row i = query, column j = key (1: may attend):",
        *["  " + "".join("1" if v else "." for v in row) for row in mask],
        f"prefix property (MASK-6): first {PREFIX_G} latents of the N={N} run minus",
        f"the N={PREFIX_G} run, max over the {K} blocks: {gap:.1e}",
    ]

    z = latents
    widths = config["mat_dims"]
    after_first = {}
    for m in widths:
        h = model.ffn_hidden(config, (m,), 1)
        after_first[m] = model.block(weights, config, 0, z, angles, mask, h)
    widest = after_first[widths[-1]]
    budget = {m: ref.classify(weights, config, images, mat_dim=m)[0, 0] for m in widths}
    lines["block"] = [
        f"F = int(D * ffn_ratio) = int({D} * {config['ffn_ratio']}) = {hidden[0]} hidden units",
        *[line for m in widths for line in (
            f"m={m}: h = int(m * r) = {model.ffn_hidden(config, (m,), 1)[0]:>3}; block 0 "
            f"differs from m={widths[-1]} by {np.abs(after_first[m] - widest).max():.4f}",
            f"       after {K} blocks: class {int(budget[m].argmax())}, confidence "
            f"{ops.softmax(budget[m]).max():.3f}")],
        f"ls_init_values = {config['ls_init_values']}: LayerScale ls1, ls2 applied (BLOCK-2)",
    ]

    for d in range(K):
        z = model.block(weights, config, d, z, angles, mask, hidden)
    written = model.write(weights, config, z, angles)  # (1, 1, D)
    logits = model.output_head(weights, config, written)  # (1, 1, C)
    probabilities = ops.softmax(logits)[0, 0]
    lines["write"] = [
        f"out = write(weights, config, latents, angles)  # {written.shape}",
        f"logits = output_head(weights, config, out)  # {logits.shape}",
        f"logits[0, 0] = {_array(logits[0, 0])}",
        f"softmax = {_array(probabilities, 3)}",
        f"predicted class {int(logits.argmax())} (label {label}), confidence "
        f"{probabilities.max():.4f}",
    ]

    by_depth = np.stack([ops.softmax(ref.classify(weights, config, images, depth=d))[0, 0]
                         for d in range(1, K + 1)])  # (K, C)
    confidences = by_depth.max(axis=-1)
    exited = ref.trace(weights, config, images, depth_tau=EXIT_TAU)
    out.arrays["probabilities_by_depth"] = by_depth
    lines["exit"] = [
        f"confidence after blocks 1..{K}: {_array(confidences, 4)}",
        f"predicted class after blocks 1..{K}: {by_depth.argmax(axis=-1).tolist()}",
        f"trace(..., depth_tau={EXIT_TAU}).exit_depths = {exited.exit_depths.tolist()}",
        f"  (the first block with confidence >= {EXIT_TAU}); its logits say class "
        f"{int(exited.logits.argmax())}",
    ]
    return out


def patches_figure(cap: Capture) -> bytes:
    """The canvas with its patch grid, and the norm of each patch token."""
    image = cap.arrays["images"][0, 0]
    norms = cap.arrays["patch_norms"]
    side = int(np.sqrt(norms.size))
    step = image.shape[0] // side
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    axes[0].imshow(image, cmap="Greys", vmin=0, vmax=1)
    for t in range(1, side):
        axes[0].axhline(t * step - 0.5, color=VERMILLION, linewidth=1)
        axes[0].axvline(t * step - 0.5, color=VERMILLION, linewidth=1)
    axes[0].set_title(f"canvas {CANVAS_INDEX} (label {cap.label}),\n{side} x {side} patches "
                      f"of {step} x {step}")
    shown = axes[1].imshow(norms.reshape(side, side), cmap="cividis")  # (M,) -> (side, side)
    for m, value in enumerate(norms):
        axes[1].text(m % side, m // side, str(m), ha="center", va="center", color=BLACK
                     if value > norms.mean() else "white", fontsize=11)
    axes[1].set_title("|patch token| by patch\n(numbers: patch index m)")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _svg(fig, "annotated-patches")


def read_figure(cap: Capture) -> bytes:
    """Read attention (heads averaged) of a few latents over the patch grid."""
    attention = cap.arrays["read_attention"]  # (N, M)
    side = int(np.sqrt(attention.shape[1]))
    fig, axes = plt.subplots(1, len(SHOWN_LATENTS) + 1, figsize=(8, 2.9))
    axes[0].imshow(cap.arrays["images"][0, 0], cmap="Greys", vmin=0, vmax=1)
    axes[0].set_title("canvas")
    for ax, n in zip(axes[1:], SHOWN_LATENTS, strict=True):
        ax.imshow(attention[n].reshape(side, side), cmap="cividis", vmin=0,  # (M,) -> grid
                  vmax=attention.max())
        ax.set_title(f"latent {n}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("where each latent reads: attention over the patches (bright = more)")
    fig.tight_layout()
    return _svg(fig, "annotated-read")


def exit_figure(cap: Capture) -> bytes:
    """Class probabilities after each block; the first block at or above EXIT_TAU."""
    by_depth = cap.arrays["probabilities_by_depth"]  # (K, C)
    K, C = by_depth.shape
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.imshow(by_depth, cmap="cividis", vmin=0, vmax=1, aspect="auto")
    for d in range(K):
        for c in range(C):
            ax.text(c, d, f"{by_depth[d, c]:.2f}", ha="center", va="center", fontsize=11,
                    color=BLACK if by_depth[d, c] > 0.5 else "white")
    exits = int(np.argmax(by_depth.max(axis=-1) >= EXIT_TAU))
    ax.axhline(exits + 0.5, color=VERMILLION, linewidth=3)
    ax.set_xticks(range(C))
    ax.set_yticks(range(K), [str(d + 1) for d in range(K)])
    ax.set_xlabel("class")
    ax.set_ylabel("after block")
    ax.set_title(f"softmax after each block, canvas {CANVAS_INDEX} (label {cap.label});\n"
                 f"line: exit with tau = {EXIT_TAU} (first confidence >= tau)")
    fig.tight_layout()
    return _svg(fig, "annotated-exit")


def render_figures() -> dict[str, bytes]:
    """File name -> SVG of every stage figure."""
    cap = capture()
    drawn = {"annotated-patches.svg": patches_figure(cap),
             "annotated-read.svg": read_figure(cap),
             "annotated-exit.svg": exit_figure(cap)}
    assert tuple(drawn) == FIGURES
    return drawn


def stage_markdown(key: str, src_uri: str) -> str:
    """The clause ids, sources, captured outputs and figure of stage ``key``."""
    if key not in STAGES:
        raise ValueError(f"oracle-stage: {key!r} is not one of {list(STAGES)}")
    stage, cap = STAGES[key], capture()
    parts = [f"**Implements** {', '.join(stage.clauses)}. The oracle's code, read from "
             "`reference_numpy` when this page was built:", ""]
    for name in stage.sources:
        path, first, text = source(name)
        parts += [f"`reference_numpy.{name}` (`{path}`, line {first}):", "",
                  f"```python\n{text.rstrip()}\n```", ""]
    parts += [f"**On canvas {CANVAS_INDEX}** (captured when this page was built):", "",
              "```text", *cap.lines[key], "```", ""]
    if stage.figure:
        figures_dir = posixpath.relpath("figures", posixpath.dirname(src_uri) or ".")
        parts += [f"![{stage.title} on canvas {CANVAS_INDEX}]({figures_dir}/{stage.figure})"
                  "{ .figure }", ""]
    return "\n".join(parts)


_MARKER = re.compile(r"^<!--\s*oracle-stage:\s*(\S+)\s*-->\s*$", re.MULTILINE)


def fill(markdown: str, src_uri: str) -> str:
    """Replace every ``oracle-stage`` marker by its stage's section."""
    return _MARKER.sub(lambda m: stage_markdown(m.group(1), src_uri), markdown)
