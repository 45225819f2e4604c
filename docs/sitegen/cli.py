"""Real output for the command-line examples: a page writes

    <!-- cli-output: python -m reference_numpy demo -->

and the hook replaces the comment by the command and what it printed when the site
was built (the command runs from the repository root with this Python). Only the
commands listed in ``COMMANDS`` may run, so a page cannot run anything else.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys

from . import ROOT

COMMANDS = (
    "python -m reference_numpy demo",
    "python -m adaperceiver demo",
    "python -m conformance --help",
)
_MARKER = re.compile(r"^<!--\s*cli-output:\s*(.+?)\s*-->\s*$", re.MULTILINE)


@functools.cache
def run(command: str) -> str:
    """What ``command`` prints (stdout and stderr); an error if it is not allowed or fails."""
    if command not in COMMANDS:
        raise ValueError(f"cli-output: {command!r} is not one of {COMMANDS}")
    argv = [sys.executable, *shlex.split(command)[1:]]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"cli-output: {command!r} exited {result.returncode}:\n"
                           f"{result.stdout}{result.stderr}")
    return (result.stdout + result.stderr).rstrip()


def fill(markdown: str) -> str:
    """Replace every ``cli-output`` marker by a console block with the real output."""
    return _MARKER.sub(
        lambda m: f"```console\n$ {m.group(1)}\n{run(m.group(1))}\n```", markdown)
