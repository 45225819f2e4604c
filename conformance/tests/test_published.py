"""Published checkpoints: the port on the real weights vs goldens recorded by the oracle.

Goldens are recorded where the hub is reachable with
``python -m conformance.goldens record --model pjajal/adaperceiver-v1-in1k-ft`` (and
``pjajal/adaperceiver-v1``) into ``conformance/goldens/published/`` (or the directory
given by ``--published-goldens``). These tests run when the weights are on disk
(``$ADAPERCEIVER_CHECKPOINT_DIR``, ``$ADAPERCEIVER_DISTILL_CHECKPOINT_DIR`` or the hub
cache) and skip with the reason otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import published
from conformance.goldens import sha256
from conformance.handles import Images, SharedHandle
from conformance.verify import Expected, check_call

from .support import read_config, require


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "golden_file" not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("conformance_published", None)
    directory = Path(option) if option else published.PUBLISHED_DIR
    files = sorted(directory.glob("*.safetensors")) if directory.is_dir() else []
    params = [pytest.param(f, id=f.stem) for f in files] or [
        pytest.param(None, id="none-recorded")]
    metafunc.parametrize("golden_file", params)


@pytest.mark.checkpoint
@pytest.mark.clauses("GOLD-1", "TOL-1", "CKPT-1", "CKPT-2", "CKPT-3", "OUT-1", "MASK-2",
                     "MAT-1", "DEPTH-1", "EXIT-2", "EXIT-3", "EXIT-4", "DIST-3")
def test_published_checkpoint(port, check, golden_file):
    """GOLD-1, TOL-1 on the published weights (CKPT-1..3): for every recorded call (each
    granularity MASK-2, each width MAT-1, several depths DEPTH-1, a confidence exit per
    policy EXIT-2..4, features DIST-3) the port matches the oracle's recorded outputs."""
    if golden_file is None:
        pytest.skip("no published-checkpoint golden recorded: run `python -m conformance.goldens "
                    "record --model pjajal/adaperceiver-v1-in1k-ft` where the hub is reachable")
    golden = published.read(golden_file)
    directory, how = published.locate_weights(golden)
    if directory is None:
        pytest.skip(how)
    found = sha256(directory / "model.safetensors")
    if found != golden.weights_sha256:
        pytest.skip(f"weights found via {how} have sha256 {found}, the golden was recorded "
                    f"from {golden.weights_sha256}: not the same checkpoint")
    config = read_config(directory)
    # one handle for every recorded call (STATE-1); the oracle is too slow here to locate
    # a failure by re-running arguments alone (oracle_dir=None)
    shared = SharedHandle(port, {"published": golden.model}, directory, golden.kind)
    images = Images(golden.images, {"published_golden": str(golden_file)})
    for args, expected in zip(golden.calls, golden.expected, strict=True):
        require(port, config, args, golden.images.shape[2:])
        check.start_case({"published": golden.model, "golden_file": str(golden_file),
                          "call_args": args})
        check_call(check, shared, images, args,
                   Expected(expected["logits"], expected["exit_depths"],
                            expected.get("features")),
                   what=f"{golden.model} {args}", config=config, oracle_dir=None)
