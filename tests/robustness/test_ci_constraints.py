"""CI installs with .ci/constraints.txt (torch pinned to the local CPU build) while the
package caps no user's torch; README's test command is the one .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_upper_bound_on_torch_for_users_and_ci_pins_the_cpu_build():
    torch_pins = re.findall(r'"(torch[<>=!~,.\d]*)"', (ROOT / "pyproject.toml").read_text())
    assert torch_pins and all(pin == "torch>=2.4" for pin in torch_pins), torch_pins
    constraints = [line for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
                   if line and not line.startswith("#")]
    assert constraints == ["torch==2.13.0+cpu"]


def test_readme_test_command_is_what_ci_runs():
    run = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"^pip install .*$", run, flags=re.M)[0]
    readme = (ROOT / "README.md").read_text()
    assert f"{install} && python -m pytest" in readme
    assert "-c .ci/constraints.txt" in install
