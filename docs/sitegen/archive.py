"""The goldens as a download: ``conformance export-goldens`` run at build time and packed
into one zip with a ``SHA256SUMS`` file (issue "documentation, third pass").

``build`` exports the committed goldens (``conformance.export.export_goldens``: ``.npy``
files, checkpoints and ``manifest.json`` with the sha256 of every file) into a temporary
directory and packs it under ``FOLDER/`` in a zip whose bytes depend only on the files
(sorted names, fixed timestamps, fixed compression), so two builds of one commit give the
same archive and the same checksum. ``fill`` replaces ``<!-- goldens-archive -->`` by the
download link, the archive's size and sha256, the commands to check it, and every file's
sha256 (the ``SHA256SUMS`` in the archive, taken from the manifest). The worked examples
(``sitegen.worked``) read their numbers from this archive.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import posixpath
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import ROOT  # noqa: F401  (importing the package puts this checkout on sys.path)

SITE_PATH = "conformance/adaperceiver-goldens.zip"
FOLDER = "adaperceiver-goldens"  # the archive's top folder
SUMS = "SHA256SUMS"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: no build time in the bytes
# The export writes ~600 small files: in a RAM-backed folder where Linux has one (0.5 s
# there against ~4 s on a busy disk); the default temporary folder elsewhere.
_RAM_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None


@dataclass(frozen=True)
class Archive:
    """The zip's bytes and sha256, the export's manifest, and SHA256SUMS' text."""

    data: bytes
    sha256: str
    manifest: dict
    sums: str

    def member(self, relative: str) -> bytes:
        """The bytes of ``FOLDER/relative`` in the archive."""
        with zipfile.ZipFile(io.BytesIO(self.data)) as archive:
            return archive.read(f"{FOLDER}/{relative}")


def sums_text(manifest: dict, manifest_bytes: bytes) -> str:
    """``sha256sum -c`` input: the manifest's sha256 of every file, and the manifest's own."""
    entries = {**manifest["sha256"], "manifest.json": hashlib.sha256(manifest_bytes).hexdigest()}
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))


def pack(files: dict[str, bytes]) -> bytes:
    """A zip of ``files`` (relative name -> bytes) under ``FOLDER/``, byte-reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{FOLDER}/{name}", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


@functools.cache
def build() -> Archive:
    """Export the goldens and pack them; raises what the export raises (the build fails)."""
    from conformance.export import export_goldens

    with tempfile.TemporaryDirectory(prefix="goldens-", dir=_RAM_DIR) as folder:
        out = Path(folder)
        manifest = export_goldens(out)
        files = {path.relative_to(out).as_posix(): path.read_bytes()
                 for path in out.rglob("*") if path.is_file()}
    sums = sums_text(manifest, files["manifest.json"])
    files[SUMS] = sums.encode("ascii")
    data = pack(files)
    return Archive(data, hashlib.sha256(data).hexdigest(), manifest, sums)


def page_markdown(src_uri: str) -> str:
    """The download section: link, size, checksum, how to check, every file's sha256."""
    archive = build()
    link = posixpath.relpath(SITE_PATH, posixpath.dirname(src_uri) or ".")
    name = posixpath.basename(SITE_PATH)
    manifest = archive.manifest
    source = manifest["source"]
    return "\n".join([
        f"[**{name}**]({link}) — {len(archive.data) / 2**20:.1f} MiB, "
        f"{len(manifest['cases'])} cases, {len(manifest['checkpoints'])} checkpoints, "
        f"{len(manifest['sha256']) + 2} files; manifest format `{manifest['format']}` "
        f"version {manifest['format_version']}; the goldens were computed for spec "
        f"{source['generator'].get('spec')} by the float64 oracle.",
        "",
        "sha256 of the archive:",
        "",
        f"```text\n{archive.sha256}  {name}\n```",
        "",
        "Check the download, unpack it, and check every file against the archive's "
        f"`{SUMS}` (its lines are listed below; each is also in `manifest.json`):",
        "",
        "```bash",
        f"echo \"{archive.sha256}  {name}\" | sha256sum -c -   # macOS: shasum -a 256 -c -",
        f"unzip {name} && cd {FOLDER}",
        f"sha256sum -c {SUMS}                                 # every line ends in OK",
        "```",
        "",
        "Without `sha256sum` (Windows, or to check against the manifest itself):",
        "",
        "```bash",
        "python -c \"import hashlib, json; m = json.load(open('manifest.json')); "
        "bad = [f for f, h in m['sha256'].items() if hashlib.sha256(open(f, 'rb').read())"
        ".hexdigest() != h]; print(bad or 'all files OK')\"",
        "```",
        "",
        "The same files, without the site: `conformance export-goldens DIR` (see the "
        "[manual](README.md#goldens-as-files-for-non-python-ports)).",
        "",
        f"### Every file's sha256 ({SUMS}) {{ data-search-exclude }}",
        "",
        f"```text\n{archive.sums.rstrip()}\n```",
        "",
    ])


def manifest_of(archive: Archive) -> dict:
    """The manifest as stored in the archive (the worked examples read this one)."""
    return json.loads(archive.member("manifest.json"))


_MARKER = re.compile(r"^<!--\s*goldens-archive\s*-->\s*$", re.MULTILINE)


def fill(markdown: str, src_uri: str) -> str:
    """Replace the ``goldens-archive`` marker by the download section."""
    return _MARKER.sub(lambda _: page_markdown(src_uri), markdown)
