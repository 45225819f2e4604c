"""The subprocess adapter protocol (issue 25 item 5b): a port as an executable speaking JSON
lines, with the oracle behind it as the worked example (conformance/examples/oracle_server.py)."""

from __future__ import annotations

import shlex
import sys

import numpy as np
import pytest
from suite_helpers import run_suite

from conformance.adapters.subprocess import PortProcessError, SubprocessAdapter, factory, oracle
from conformance.goldens import GOLDENS_DIR, case_tensors, load_manifest
from conformance.tolerances import errors

SERVER = f"{shlex.quote(sys.executable)} -m conformance.examples.oracle_server"


def test_goldens_through_the_protocol_pass_on_the_oracle_server(tmp_path):
    """A selection of the suite (goldens of each method, an anytime grid, one argument
    error) run through ``ADAPERCEIVER_PORT_COMMAND``: every selected test passes."""
    done, report = run_suite(
        "conformance.adapters.subprocess:factory", tmp_path, "-k",
        "test_golden and (cls-default or distill-default or cls-exit-per_sample-mid) "
        "or test_anytime_goldens and grid-odd or test_invalid_argument_raises and token_grans-zero",
        env={"ADAPERCEIVER_PORT_COMMAND": SERVER})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ran = {test["id"]: test["outcome"] for test in report["tests"]}
    assert len(ran) == 5 and set(ran.values()) == {"passed"}, ran
    assert report["implementation"]["name"] == "reference_numpy (subprocess)"


@pytest.mark.slow
def test_the_whole_suite_passes_through_the_protocol(tmp_path):
    done, report = run_suite("conformance.adapters.subprocess:oracle", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert report["totals"]["failed"] == 0 and report["totals"]["passed"] > 100


def test_outputs_and_errors_come_back_from_the_process():
    port = oracle()
    try:
        case = next(c for c in load_manifest()["cases"] if c["id"] == "cls-width-per-sample")
        golden = case_tensors(GOLDENS_DIR, case)
        handle = port.load(str(GOLDENS_DIR / "checkpoints" / case["checkpoint"]))
        widths = [np.int64(w) for w in case["call_args"]["mat_dim"]]  # NumPy scalars as JSON
        out = port.classify(handle, golden["images"], mat_dim=widths)
        assert errors(out["logits"], golden["logits"])[1] <= 1e-10
        assert np.array_equal(out["exit_depths"], golden["exit_depths"])
        with pytest.raises(ValueError, match="num_tokens"):
            port.classify(handle, golden["images"], num_tokens=0)
        with pytest.raises(TypeError, match="num_token"):  # unknown keyword: the port's TypeError
            port.classify(handle, golden["images"], num_token=8)
    finally:
        port.close()


def test_a_port_that_exits_is_one_clear_error():
    with pytest.raises(PortProcessError, match=r"ended \(exit status 3\) during op 'hello'"):
        SubprocessAdapter([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_a_port_that_prints_other_things_is_named():
    with pytest.raises(PortProcessError, match=r"not JSON: 'loading\.\.\."):
        SubprocessAdapter([sys.executable, "-c", "print('loading...')"])


def test_the_factory_needs_the_command(monkeypatch):
    monkeypatch.delenv("ADAPERCEIVER_PORT_COMMAND", raising=False)
    with pytest.raises(ValueError, match="ADAPERCEIVER_PORT_COMMAND must name"):
        factory()
