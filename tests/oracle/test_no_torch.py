"""The oracle never imports torch (docs/architecture.md: reference_numpy may import numpy,
safetensors and huggingface_hub only), so it stays an independent definition of the
semantics (NUM-1, ATTN-1)."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "reference_numpy"

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any "import torch" now raises ImportError
    import numpy as np
    import reference_numpy as rn
    config = rn.default_config(embed_dim=8, num_heads=2, depth=1, max_latent_tokens=4,
                               mask_token_grans=[2, 4], mat_dims=[8], img_size=8,
                               patch_size=4, num_classes=3)
    weights = rn.random_weights(config)
    x = np.zeros((1, 3, 8, 12))
    rn.trace(weights, config, x, num_tokens=6, mat_dim=[4], depth_tau=0.5)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch"
                    and sys.modules[m] is not None)
    print("TORCH_MODULES", loaded)
""")


def test_oracle_runs_with_torch_blocked():
    """NUM-1, ATTN-1: importing and running the oracle with torch unimportable works and
    loads no torch module."""
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            cwd=PACKAGE.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TORCH_MODULES []" in result.stdout


def test_no_torch_import_in_source():
    """NUM-1, ATTN-1: no module of the package imports torch."""
    pattern = re.compile(r"^\s*(import\s+torch|from\s+torch[\s.])", re.MULTILINE)
    sources = sorted(PACKAGE.rglob("*.py"))
    assert sources
    offenders = [str(p) for p in sources if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
