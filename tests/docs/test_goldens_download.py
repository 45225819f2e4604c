"""The goldens download (issue "documentation, third pass", teach item 4): the zip the
site offers holds the exported goldens with the values of the committed ones, every
file's sha256 is the manifest's and SHA256SUMS', and the page states the archive's
sha256; the built site's zip has that checksum."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conformance.goldens import GOLDENS_DIR, STAGE_PREFIX, case_tensors, load_manifest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
from sitegen import archive  # noqa: E402

PAGE = ROOT / "docs" / "conformance" / "goldens.md"
BUILD_WITHOUT_TORCH = ("import sys; sys.modules['torch'] = None; "
                       "from mkdocs.__main__ import cli; cli()")


def _members(data: bytes) -> dict[str, bytes]:
    """Relative name (under the archive's folder) -> bytes of every member."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        prefix = f"{archive.FOLDER}/"
        assert all(name.startswith(prefix) for name in zf.namelist())
        return {name[len(prefix):]: zf.read(name) for name in zf.namelist()}


def _stated_sha256(markdown: str) -> str:
    """The archive sha256 the page states (the ``sha256  name`` line)."""
    match = re.search(r"^([0-9a-f]{64})  adaperceiver-goldens\.zip$", markdown, re.MULTILINE)
    assert match, "no archive sha256 on the page"
    return match.group(1)


def test_every_file_has_the_manifests_checksum():
    """The members are the manifest's files, the manifest and SHA256SUMS; each hashes to
    the manifest's sha256 and to its SHA256SUMS line."""
    built = archive.build()
    members = _members(built.data)
    manifest = json.loads(members["manifest.json"])
    assert set(members) == set(manifest["sha256"]) | {"manifest.json", archive.SUMS}
    sums = dict(reversed(line.split("  ", 1)) for line in
                members[archive.SUMS].decode("ascii").splitlines())
    assert set(sums) == set(members) - {archive.SUMS}
    for name, data in members.items():
        if name != archive.SUMS:
            assert hashlib.sha256(data).hexdigest() == sums[name], name
        if name in manifest["sha256"]:
            assert hashlib.sha256(data).hexdigest() == manifest["sha256"][name], name


def test_archive_values_are_the_committed_goldens():
    """Every case array in the zip equals the committed golden it was exported from."""
    members = _members(archive.build().data)
    manifest = json.loads(members["manifest.json"])
    source = load_manifest(GOLDENS_DIR)
    committed = {case["id"]: case for case in source["cases"] + source["anytime_cases"]}
    assert {case["id"] for case in manifest["cases"]} == set(committed)
    for case in manifest["cases"]:
        tensors = case_tensors(GOLDENS_DIR, committed[case["id"]])
        entries = {**case["inputs"], **case["outputs"],
                   **{STAGE_PREFIX + k: v for k, v in case["stages"].items()}}
        assert set(entries) == set(tensors), case["id"]
        for name, entry in entries.items():
            array = np.load(io.BytesIO(members[entry["file"]]), allow_pickle=False)
            np.testing.assert_array_equal(array, tensors[name], err_msg=f"{case['id']} {name}")


def test_page_states_the_archives_checksum_and_every_file():
    """The download section states the sha256 of the bytes served and lists SHA256SUMS."""
    built = archive.build()
    markdown = archive.fill(PAGE.read_text(encoding="utf-8"), "conformance/goldens.md")
    assert _stated_sha256(markdown) == hashlib.sha256(built.data).hexdigest()
    assert built.sums.rstrip() in markdown
    assert "](adaperceiver-goldens.zip)" in markdown
    assert "sha256sum -c SHA256SUMS" in markdown


def test_packing_is_reproducible():
    """The same files give the same zip bytes (fixed order, timestamps, compression)."""
    files = {"b/x.npy": b"\x93NUMPY" + bytes(100), "a.json": b"{}"}
    first, second = archive.pack(files), archive.pack(dict(reversed(files.items())))
    assert first == second
    assert _members(first) == files


@pytest.mark.slow
def test_built_site_serves_the_archive_the_page_names(tmp_path):
    """mkdocs build --strict (no torch): the zip in the site hashes to the sha256 on the
    goldens page, and sha256sum -c of its SHA256SUMS passes in the unpacked folder."""
    pytest.importorskip("mkdocs", reason="mkdocs is installed by the 'test' and 'docs' extras")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-c", BUILD_WITHOUT_TORCH, "build", "--strict", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    data = (site / archive.SITE_PATH).read_bytes()
    page = (site / "conformance" / "goldens.html").read_text(encoding="utf-8")
    stated = re.search(r"([0-9a-f]{64})  adaperceiver-goldens\.zip", page).group(1)
    assert hashlib.sha256(data).hexdigest() == stated
    assert 'href="adaperceiver-goldens.zip"' in page
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", archive.SUMS], cwd=tmp_path / archive.FOLDER,
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    examples = (site / "conformance" / "examples.html").read_text(encoding="utf-8")
    assert examples.count("Golden case") >= 6
    annotated = (site / "tutorial" / "annotated.html").read_text(encoding="utf-8")
    assert "oracle-stage" not in annotated and annotated.count("annotated-") >= 3
    assert 'href="../spec/semantics.html#READ-1"' in annotated
