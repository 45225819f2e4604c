"""Exclusion files: tests a port knowingly does not pass, grouped by reason.

TOML::

    [[exclusion]]
    reason = "NTK RoPE scaling not implemented yet (issue #12)"
    tests = ["test_goldens.py::test_golden[cls-ntk-",
             "test_properties.py::test_classification_matches_oracle"]

JSON: ``{"exclusion": [{"reason": "...", "tests": ["...", ...]}]}``.

The file name must end in ``.toml`` or ``.json``: the extension selects the
format, and any other extension is an error naming the file.

Each entry of ``tests`` is a test-id *prefix* (ids as the report prints them:
``<module>::<test>[<params>]``, relative to the suite). An excluded test is
skipped and listed under its reason in the report; a prefix that matches no
collected test gives a warning (a stale exclusion hides nothing, but it
should be cleaned up).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Exclusion:
    reason: str
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class Exclusions:
    """Parsed exclusion file; ``source`` names it in messages."""

    entries: tuple[Exclusion, ...]
    source: str = "<none>"

    def reason_for(self, test_id: str) -> str | None:
        """The reason of the first entry with a prefix of ``test_id``, else None."""
        for entry in self.entries:
            if any(test_id.startswith(prefix) for prefix in entry.prefixes):
                return entry.reason
        return None

    def unmatched(self, test_ids: Iterable[str]) -> list[str]:
        """Prefixes that match none of ``test_ids``."""
        ids = list(test_ids)
        return [prefix for entry in self.entries for prefix in entry.prefixes
                if not any(test_id.startswith(prefix) for test_id in ids)]


def parse_exclusions(data: object, source: str) -> Exclusions:
    """Validate the parsed TOML/JSON document; ``ValueError`` names every problem."""
    problems = []
    items = data.get("exclusion") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{source}: expected a top-level list 'exclusion' of "
                         "{reason, tests} tables")
    entries = []
    for i, item in enumerate(items):
        reason = item.get("reason") if isinstance(item, dict) else None
        tests = item.get("tests") if isinstance(item, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"exclusion[{i}].reason must be a non-empty string, got {reason!r}")
        if (not isinstance(tests, list) or not tests
                or not all(isinstance(t, str) and t for t in tests)):
            problems.append(f"exclusion[{i}].tests must be a non-empty list of test-id "
                            f"prefixes, got {tests!r}")
        unknown = sorted(set(item) - {"reason", "tests"}) if isinstance(item, dict) else []
        if unknown:
            problems.append(f"exclusion[{i}] has unknown keys {unknown}")
        if not problems:
            entries.append(Exclusion(reason.strip(), tuple(tests)))
    if problems:
        raise ValueError(f"{source}: invalid exclusion file:\n  - " + "\n  - ".join(problems))
    return Exclusions(tuple(entries), source)


def load_exclusions(path: str | Path) -> Exclusions:
    """Read an exclusion file; its name must end in ``.toml`` or ``.json`` (the format).

    ``ValueError`` naming the file for an unknown extension, unreadable text or a
    TOML / JSON syntax error (with its line and column).
    """
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"exclusion file {path}: the name must end in .toml or .json "
                         f"(which selects the format), got {path.suffix or 'no extension'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"exclusion file {path}: cannot read it: {error}") from error
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise ValueError(f"{path}: TOML exclusion files need Python >= 3.11; "
                             "use the JSON form") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"exclusion file {path}: invalid TOML: {error}") from error
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"exclusion file {path}: invalid JSON: {error}") from error
    return parse_exclusions(data, str(path))
