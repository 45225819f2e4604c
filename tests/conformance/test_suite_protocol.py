"""The port protocol: adapter loading, capability validation and tolerance overrides (TOL-1)."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest

from conformance.plugin import SuiteState, tolerance_for
from conformance.protocol import Capabilities, ToleranceOverride, load_adapter

CAPS = Capabilities(name="p", version="1", dtype="float32")


class _Adapter:
    capabilities = CAPS

    def load(self, checkpoint_dir):
        return checkpoint_dir

    def classify(self, handle, images, **call_args):
        return {}

    def distill(self, handle, images, **call_args):
        return {}


@pytest.fixture
def fake_module(monkeypatch):
    module = types.ModuleType("fake_port")
    module.good = _Adapter
    module.no_caps = lambda: types.SimpleNamespace(load=None, classify=None)
    module.no_stages = lambda: type("A", (_Adapter,), {
        "capabilities": replace(CAPS, stages=True)})()
    module.no_anytime = lambda: type("A", (_Adapter,), {
        "capabilities": replace(CAPS, anytime=True)})()
    module.not_callable = 3
    monkeypatch.setitem(sys.modules, "fake_port", module)
    return module


def test_load_adapter_accepts_a_complete_adapter(fake_module):
    assert isinstance(load_adapter("fake_port:good"), _Adapter)


@pytest.mark.parametrize(("spec", "problem"), [
    ("fake_port", "must look like 'package.module:factory'"),
    ("fake_port:missing", "has no callable 'missing'"),
    ("fake_port:not_callable", "has no callable 'not_callable'"),
    ("fake_port:no_caps", "must be a conformance.protocol.Capabilities"),
    ("fake_port:no_stages", r"lacks method\(s\) \['stages'\]"),
    ("fake_port:no_anytime", r"lacks method\(s\) \['anytime'\]"),  # ANY-1 capability
])
def test_load_adapter_names_the_problem(fake_module, spec, problem):
    with pytest.raises(ValueError, match=problem):
        load_adapter(spec)


def test_capabilities_reject_unknown_values():
    with pytest.raises(ValueError, match="block_masks has unknown values"):
        replace(CAPS, block_masks=frozenset({"sliding"}))


def test_tolerance_override_needs_a_reason():
    with pytest.raises(ValueError, match="needs a reason"):
        ToleranceOverride("test_goldens.py", 1e-3, " ")


def test_port_override_applies_by_test_id_prefix():
    """TOL-1: a port override replaces the table for matching test ids only, with its reason."""
    caps = replace(CAPS, tolerance_overrides=(
        ToleranceOverride("test_goldens.py::test_golden[cls-ntk-", 5e-4, "fp16 RoPE tables"),))
    adapter = _Adapter()
    adapter.capabilities = caps
    state = SuiteState("x:y", adapter, "ci", None, None, None)
    hit = tolerance_for(state, "test_goldens.py::test_golden[cls-ntk-24]")
    assert (hit.rtol, hit.source) == (5e-4, "port override: fp16 RoPE tables")
    assert tolerance_for(state, "test_goldens.py::test_golden[cls-default]").rtol == 1e-4
