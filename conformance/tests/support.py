"""Helpers shared by the suite's test modules: capability gates, checkpoints, oracle runs."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conformance.cases import missing_capabilities
from conformance.check import Checker
from conformance.goldens import GOLDENS_DIR, load_manifest
from conformance.handles import Images, SharedHandle
from conformance.protocol import PortAdapter
from conformance.verify import check_call, kind_of, oracle_expected


def require(port: PortAdapter, config: Mapping[str, Any], call_args: Mapping[str, Any],
            image_hw: tuple[int, int]) -> None:
    """Skip (with every reason) when the port lacks a capability this call needs."""
    reasons = missing_capabilities(port.capabilities, config, call_args, tuple(image_hw))
    if reasons:
        pytest.skip("; ".join(reasons))


def precision_profile(config: pytest.Config) -> str:
    """The precision profile of the run (``--profile``, else the port's declared dtype)."""
    from conformance.plugin import suite_state

    return suite_state(config).precision_profile


def require_stages(port: PortAdapter) -> None:
    if not port.capabilities.stages:
        pytest.skip("port exposes no stages (capabilities.stages)")


def read_config(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / "config.json").read_text())


def golden_checkpoint(name: str) -> Path:
    """Directory of a committed golden checkpoint (GOLD-1) by recipe name."""
    return GOLDENS_DIR / load_manifest()["checkpoints"][name]["path"]


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory per Hypothesis example (function fixtures are per test)."""
    with tempfile.TemporaryDirectory(prefix="adaperceiver-conformance-") as tmp:
        yield Path(tmp)


def check_against_oracle(port: PortAdapter, check: Checker, directory: Path, images: Images,
                         call_args: Mapping[str, Any], scenario: Mapping[str, Any]) -> None:
    """Load the drawn ``scenario``'s checkpoint (in ``directory``) in the port and compare
    one call with the oracle; the failure is located (``conformance.verify``)."""
    config = read_config(directory)
    checkpoint = {"scenario": {k: scenario[k] for k in ("kind", "config", "weights_seed",
                                                         "checkpoint_dtype")}}
    shared = SharedHandle(port, checkpoint, directory, kind_of(config))
    check_call(check, shared, images, call_args, oracle_expected(directory, images.array,
                                                                  call_args),
               what="port vs oracle", config=config, oracle_dir=directory)
