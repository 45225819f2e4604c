"""Fixtures of the conformance suite: the port under test, its shared handles and a per-test
``Checker``."""

from __future__ import annotations

import pytest

from conformance.check import Checker
from conformance.handles import HandlePool
from conformance.plugin import CHECKER, suite_id, suite_state, tolerance_for
from conformance.protocol import PortAdapter


@pytest.fixture(scope="session")
def port(pytestconfig: pytest.Config) -> PortAdapter:
    """The adapter built from ``--conformance-impl`` (skips the test without it)."""
    return suite_state(pytestconfig).adapter


@pytest.fixture(scope="session")
def handles(pytestconfig: pytest.Config) -> HandlePool:
    """One shared handle per golden checkpoint for the goldens and invariants (STATE-1)."""
    return suite_state(pytestconfig).handles


@pytest.fixture
def check(request: pytest.FixtureRequest, port: PortAdapter) -> Checker:
    """Records this test's comparisons for the report, with its TOL-1 tolerance."""
    checker = Checker(tolerance_for(suite_state(request.config), suite_id(request.node)))
    request.node.stash[CHECKER] = checker
    return checker
