"""The command line ``python -m adaperceiver demo|run`` (README's main job)."""

from __future__ import annotations

import numpy as np
import pytest

import reference_numpy as oracle
from adaperceiver.__main__ import main


def _rows(text: str) -> list[list[str]]:
    """Table rows (after the header) split on the final five columns."""
    return [line.rsplit(None, 5) for line in text.splitlines()[1:] if line.strip()]


def test_demo_runs_every_budget(capsys):
    """The demo writes, reloads and runs a checkpoint; one row per sample and budget, and each
    fixed-depth row reports that depth (DEPTH-1, EXIT-4)."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out.split("\n", 1)[1])
    assert len(rows) == 6 * 4
    assert {int(r[4]) for r in rows if r[0].startswith("depth=2")} == {2}
    assert any(r[0].startswith("depth_tau=0.8, exit_policy=per_sample") for r in rows)


def test_run_matches_the_oracle(tmp_path, capsys):
    """``run`` on an oracle-written checkpoint and an .npy batch predicts the oracle's classes
    and reports the oracle's exit depths (OUT-1, EXIT-3)."""
    config = oracle.tiny_config()
    weights = oracle.random_weights(config, seed=3)
    oracle.save_checkpoint(tmp_path / "ckpt", config, weights)
    images = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", images)
    expected = oracle.trace(weights, config, images.astype(np.float64), num_tokens=8,
                            depth_tau=0.5, exit_policy="per_sample")
    assert main(["run", "--checkpoint", str(tmp_path / "ckpt"), "--images",
                 str(tmp_path / "x.npy"), "--num-tokens", "8", "--depth-tau", "0.5",
                 "--exit-policy", "per_sample"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [int(r[2]) for r in rows] == expected.logits[:, 0].argmax(-1).tolist()
    assert [int(r[4]) for r in rows] == expected.exit_depths.tolist()


@pytest.mark.parametrize("argv, name", [
    (["--num-tokens", "0"], "num_tokens"),
    (["--mat-dim", "999"], "mat_dim"),
    (["--depth-tau", "1.5"], "depth_tau"),
])
def test_run_reports_bad_arguments(tmp_path, capsys, argv, name):
    """Invalid budgets exit 1 with the model's message naming the argument (ARG-8)."""
    config = oracle.tiny_config()
    oracle.save_checkpoint(tmp_path, config, oracle.random_weights(config))
    assert main(["run", "--checkpoint", str(tmp_path), *argv]) == 1
    assert capsys.readouterr().err.startswith(f"error: {name}")
