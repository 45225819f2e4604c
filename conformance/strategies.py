"""Hypothesis strategies: tiny configs, weights seeds, images and call arguments.

Everything is drawn only from what the port declares in its ``Capabilities``
(an unsupported attention variant is never drawn, so properties do not skip).
A drawn *scenario* is a JSON-ready dict, which is also the repro the report
prints for a failure::

    {"kind": "classification", "config": {...overrides...}, "weights_seed": 3,
     "checkpoint_dtype": "float32", "image_shape": [2, 3, 8, 12], "image_seed": 7,
     "call_args": {"num_tokens": 5, "mat_dim": [3, 8]}}

``materialize`` turns it back into a checkpoint directory and images.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .cases import make_images, write_checkpoint
from .protocol import BLOCK_MASKS, Capabilities


@st.composite
def config_overrides(draw: st.DrawFn, caps: Capabilities, kind: str) -> dict[str, Any]:
    """``default_config`` overrides for a tiny model: D <= 24, depth <= 3, <= 12 latents."""
    heads = draw(st.integers(1, 3))
    head_dim = draw(st.sampled_from([2, 4, 6]))
    D = heads * head_dim
    max_latent = draw(st.integers(2, 12))
    patch = draw(st.sampled_from([2, 4]))
    overrides = {
        "embed_dim": D,
        "num_heads": heads,
        "depth": draw(st.integers(1, 3)),
        "max_latent_tokens": max_latent,
        "mask_token_grans": sorted(draw(st.sets(st.integers(1, max_latent), min_size=1,
                                                max_size=4))),
        "mat_dims": sorted(draw(st.sets(st.integers(1, D), min_size=1, max_size=3))),
        "ffn_ratio": draw(st.sampled_from([1.0, 2.0, 2.5, 2.57, 4.0])),
        "rope_theta": draw(st.sampled_from([100, 10000])),
        "attn_layer": (attn := draw(st.sampled_from(sorted(caps.attn_layers)))),
        # MASK-1: with "full" attention block_mask is ignored, so any value is fair.
        "block_mask": draw(st.sampled_from(sorted(caps.block_masks if attn == "flex"
                                                  else BLOCK_MASKS))),
        "ls_init_values": draw(st.sampled_from([1e-6, 0.0, None])),
        "qkv_bias": draw(st.booleans()),
        "proj_bias": draw(st.booleans()),
        "use_embed_ffn": draw(st.booleans()),
        "use_output_ffn": draw(st.booleans()),
        "patch_size": patch,
        "img_size": patch * draw(st.integers(1, 4)),
        "in_channels": draw(st.sampled_from([1, 3])),
        "num_classes": draw(st.integers(2, 12)),
    }
    if kind == "distill":
        overrides["output_feat_dim"] = draw(st.integers(2, 8))
    return overrides


@st.composite
def call_arguments(draw: st.DrawFn, caps: Capabilities, config: Mapping[str, Any],
                   batch: int) -> dict[str, Any]:
    """Fixed-budget call args (no depth_tau); each argument present or left at its default."""
    D, L = config["embed_dim"], config["max_latent_tokens"]
    widths = [st.integers(1, D)]
    if caps.per_sample_width:
        widths.append(st.lists(st.integers(1, D), min_size=batch, max_size=batch))
    options = {
        "num_tokens": st.integers(1, 2 * L + 3),
        "mat_dim": st.one_of(*widths),
        "depth": st.integers(1, config["depth"]),
        "token_grans": st.sets(st.integers(1, 2 * L), min_size=1, max_size=4).map(sorted),
    }
    return {name: draw(strategy) for name, strategy in options.items() if draw(st.booleans())}


@st.composite
def scenarios(draw: st.DrawFn, caps: Capabilities, kind: str, *,
              with_call_args: bool = True) -> dict[str, Any]:
    """A full scenario (see the module docstring) the port can run."""
    from reference_numpy import default_config

    overrides = draw(config_overrides(caps, kind))
    config = default_config(kind, **overrides)
    patch, img = config["patch_size"], config["img_size"]
    batch = draw(st.integers(1, 3))
    if caps.resized_inputs:
        height, width = (patch * draw(st.integers(1, 4)) for _ in range(2))
    else:
        height = width = img
    return {
        "kind": kind,
        "config": overrides,
        "weights_seed": draw(st.integers(0, 2**16)),
        "checkpoint_dtype": "float32",
        "image_shape": [batch, config["in_channels"], height, width],
        "image_seed": draw(st.integers(0, 2**16)),
        "call_args": draw(call_arguments(caps, config, batch)) if with_call_args else {},
    }


def materialize(scenario: Mapping[str, Any], directory: Path) -> tuple[Path, np.ndarray]:
    """Write the scenario's checkpoint into ``directory``; return it and the images."""
    from reference_numpy import default_config

    config = default_config(scenario["kind"], **scenario["config"])
    path = write_checkpoint(directory, config, scenario["weights_seed"],
                            dtype=scenario.get("checkpoint_dtype", "float32"))
    return path, make_images(scenario["image_shape"], scenario["image_seed"])
