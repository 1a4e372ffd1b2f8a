"""Engine archives: a zip of an engine's plain files plus ``manifest.json``.

INTERFACE STUB — implementation pending (see the docstrings for the contract).

Layout of an archive::

    manifest.json           written first, compressed
    <engine files>          as saved by Engine.save; large binary files (.npy, .ann,
                            .bin, ...) stored uncompressed, text files (.json, .jsonl,
                            .txt) deflated

``manifest.json``::

    {"format": 1,
     "engine": "lexical",               entry-point name
     "engine_version": "0.1.0",         the plugin distribution's version
     "recsys_version": "0.1.0",
     "version": "20261128T211800123456Z",   build id, derived from created_at
     "created_at": "2026-11-28T21:18:00.123456Z",   UTC
     "publications": 200, "sentences": 1130,
     "model": null, "dimension": null,
     "extra": {...},                    EngineMetadata.extra
     "files": [{"path": "vocab.json", "size": 1234, "sha256": "..."}, ...]}

:func:`verify` checks, before anything is unpacked: the archive's size, that it is a
zip, the number of entries, each member's path (no absolute path, no ``..``, no
backslash or drive, no link, no directory tricks), each member's size and
compression ratio (zip bombs), that members and manifest list the same files, every
size and sha256 (by streaming, never trusting the headers alone), the manifest's
format and fields, and the engine: installed here (when ``engines`` is given) or
only well-formed (the API). Nothing is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from recsys.config import Settings
from recsys.engine import EngineMetadata

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "FileEntry",
    "Limits",
    "Manifest",
    "VerifiedArchive",
    "file_sha256",
    "new_version",
    "pack",
    "read_manifest",
    "unpack",
    "verify",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``; :meth:`from_dict` validates (InvalidArchive)."""

    engine: str
    version: str
    created_at: str
    publications: int
    sentences: int
    files: tuple[FileEntry, ...]
    engine_version: str | None = None
    recsys_version: str | None = None
    model: str | None = None
    dimension: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def created(self) -> datetime:
        """``created_at`` as an aware UTC datetime."""
        raise NotImplementedError

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Limits:
    """What :func:`verify` accepts; defaults match the settings' defaults."""

    max_bytes: int = 4 * 1024**3
    max_file_bytes: int = 3 * 1024**3
    max_entries: int = 1000
    max_ratio: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_bytes=settings.archive_max_bytes,
            max_file_bytes=settings.archive_max_file_bytes,
            max_entries=settings.archive_max_entries,
            max_ratio=settings.archive_max_ratio,
        )


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive that passed :func:`verify`: its manifest, size and sha256."""

    path: Path
    manifest: Manifest
    size: int
    sha256: str


def new_version(now: datetime | None = None) -> tuple[str, str]:
    """A new build's ``(version, created_at)`` from the current UTC time (microseconds).

    ``version`` sorts like ``created_at``: ``20261128T211800123456Z``.
    """
    raise NotImplementedError


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    raise NotImplementedError


def pack(
    folder: Path,
    out: Path,
    *,
    engine: str,
    metadata: EngineMetadata,
    engine_version: str | None = None,
    created_at: datetime | None = None,
) -> VerifiedArchive:
    """Pack every regular file under ``folder`` (an Engine.save output) into the zip
    ``out`` with a manifest; written to a temporary name then renamed. Returns the
    archive with its manifest, size and sha256."""
    raise NotImplementedError


def verify(path: Path, limits: Limits = Limits(), *, engines: Collection[str] | None = None) -> VerifiedArchive:
    """Check an archive completely without unpacking it; raise InvalidArchive(reason).

    ``engines``: the installed engine names (CLI, workers); None (the API) checks
    the engine name's form only.
    """
    raise NotImplementedError


def unpack(
    path: Path, dest: Path, limits: Limits = Limits(), *, engines: Collection[str] | None = None
) -> Manifest:
    """Verify, then extract into a temporary folder beside ``dest`` (checking sizes and
    sha256 again while writing) and rename it to ``dest`` atomically. ``dest`` must
    not exist. On any failure nothing is left behind."""
    raise NotImplementedError


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an unpacked engine folder (``folder/manifest.json``)."""
    raise NotImplementedError
