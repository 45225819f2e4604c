"""AdaPerceiver conformance suite: checks any port (JAX, MLX, ONNX, C++) against the spec.

Run ``python -m conformance --impl package.module:factory`` (see ``conformance/README.md``);
the port protocol is documented in ``conformance.protocol``.
"""

__version__ = "0.1.0"

from pathlib import Path

SUITE_DIR = Path(__file__).parent / "tests"  # the suite's pytest modules
PROFILES = {"ci": 10, "thorough": 300}  # Hypothesis max_examples per property, by --profile
