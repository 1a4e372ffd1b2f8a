"""Engine archives: a zip of an engine's plain files plus ``manifest.json``.

Layout of an archive::

    manifest.json           written first, compressed
    <engine files>          as saved by Engine.save; large binary files (.npy, .ann,
                            .bin, ...) stored uncompressed, text files (.json, .jsonl,
                            .txt) deflated

``manifest.json`` (see :mod:`recsys.manifest`)::

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
only well-formed (the API). Nothing is ever unpickled. The zip-level checks live
in :mod:`recsys.safezip`.

Everything streams in chunks of 1 MiB: an engine of the full dataset is ~1 GB.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import time
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from recsys import __version__
from recsys.config import Settings
from recsys.engine import EngineMetadata
from recsys.errors import InvalidArchive, StoreError
from recsys.fsutil import CHUNK, atomic_output, create_synced, fsync_dir, hash_file, sha256_of, temp_name, write_synced
from recsys.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    new_version,
    parse_manifest,
    path_problem,
)
from recsys.registry import valid_engine_name
from recsys.safezip import SafeZip, open_zip

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "FileEntry",
    "Limits",
    "Manifest",
    "VerifiedArchive",
    "extract",
    "file_sha256",
    "new_version",
    "pack",
    "peek_manifest",
    "read_manifest",
    "unpack",
    "verify",
]

logger = logging.getLogger(__name__)

#: Largest ``manifest.json`` accepted.
MAX_MANIFEST_BYTES = 16 * 1024**2
#: Files packed with deflate; everything else (vectors, indexes) is stored as is.
TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".txt", ".csv", ".tsv", ".md", ".yaml", ".yml", ".xml"})
_FILE_MODE = (stat.S_IFREG | 0o644) << 16


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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    return hash_file(path)[0]


# -- pack ------------------------------------------------------------------------------


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
    archive with its manifest, size and sha256.

    Raises InvalidArchive when ``folder`` holds something an archive cannot carry
    (a link, a special file, an unsafe name, its own ``manifest.json``) or when
    ``metadata`` is not plain JSON.
    """
    started = time.monotonic()
    folder, out = Path(folder), Path(out)
    if not valid_engine_name(engine):
        raise InvalidArchive(f"cannot pack: {engine!r} is not an engine name")
    entries = tuple(_file_entry(folder, rel) for rel in _engine_files(folder))
    version, created = new_version(created_at)
    manifest = Manifest(
        engine=engine,
        version=version,
        created_at=created,
        publications=metadata.publications,
        sentences=metadata.sentences,
        files=entries,
        engine_version=engine_version,
        recsys_version=__version__,
        model=metadata.model,
        dimension=metadata.dimension,
        extra=dict(metadata.extra),
    )
    try:
        manifest_bytes = manifest.to_json()
    except (TypeError, ValueError) as exc:
        raise InvalidArchive(f"cannot pack: the engine's metadata 'extra' is not plain JSON: {exc}") from exc
    parse_manifest(manifest_bytes, "the manifest being packed")  # the same checks as verify
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out, prefix=out.name) as raw:
        with zipfile.ZipFile(raw, "w", allowZip64=True) as archive:
            date_time = _zip_time(manifest.created)
            info = zipfile.ZipInfo(MANIFEST_NAME, date_time)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, _FILE_MODE
            archive.writestr(info, manifest_bytes)
            for entry in entries:
                _copy_into(archive, folder / entry.path, entry, date_time)
        raw.flush()
        raw.seek(0)
        sha256, size = sha256_of(raw)
    logger.info(
        "packed engine %s version %s: %d files, %.1f MB into %s (%.1f MB) in %.1fs",
        engine, version, len(entries), manifest.total_size / 1e6, out, size / 1e6, time.monotonic() - started,
    )
    return VerifiedArchive(out, manifest, size, sha256)


def _file_entry(folder: Path, rel: str) -> FileEntry:
    sha256, size = hash_file(folder / rel)
    return FileEntry(rel, size, sha256)


def _engine_files(folder: Path) -> list[str]:
    """Relative paths of every file under ``folder``, sorted; refuse what cannot be packed."""
    if not folder.is_dir():
        raise InvalidArchive(f"cannot pack {str(folder)!r}: not a folder")
    found: list[str] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if stat.S_ISLNK(mode):
            raise InvalidArchive(f"cannot pack {rel!r} from {str(folder)!r}: it is a symbolic link; save plain files")
        if not stat.S_ISREG(mode):
            raise InvalidArchive(f"cannot pack {rel!r} from {str(folder)!r}: it is not a regular file")
        problem = path_problem(rel)
        if problem is not None:
            raise InvalidArchive(f"cannot pack file {rel!r}: it {problem}")
        if rel == MANIFEST_NAME:
            raise InvalidArchive(f"cannot pack {str(folder)!r}: an engine must not save its own {MANIFEST_NAME}")
        found.append(rel)
    return found


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _copy_into(
    archive: zipfile.ZipFile, source: Path, entry: FileEntry, date_time: tuple[int, int, int, int, int, int]
) -> None:
    info = zipfile.ZipInfo(entry.path, date_time)
    info.external_attr = _FILE_MODE
    info.file_size = entry.size  # lets zipfile choose ZIP64 for files over 2 GB
    text = Path(entry.path).suffix.lower() in TEXT_SUFFIXES
    info.compress_type = zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED
    copied = 0
    with open(source, "rb") as src, archive.open(info, "w") as dst:
        while chunk := src.read(CHUNK):
            copied += len(chunk)
            dst.write(chunk)
    if copied != entry.size:
        raise InvalidArchive(f"cannot pack {entry.path!r}: it changed size while being packed")


# -- verify ----------------------------------------------------------------------------


def verify(path: Path, limits: Limits = Limits(), *, engines: Collection[str] | None = None) -> VerifiedArchive:
    """Check an archive completely without unpacking it; raise InvalidArchive(reason).

    ``engines``: the installed engine names (CLI, workers); None (the API) checks
    the engine name's form only.
    """
    started = time.monotonic()
    path = Path(path)
    with open_zip(path, limits) as archive:
        manifest = _archive_manifest(archive)
        _match_members(archive, manifest)
        if engines is not None and manifest.engine not in engines:
            installed = ", ".join(sorted(engines)) or "none"
            raise InvalidArchive(
                f"archive is for engine {manifest.engine!r}, which is not installed here (installed: {installed}); "
                f"install its plugin, e.g. 'pip install -e plugins/recsys-engine-{manifest.engine}'"
            )
        archive.fp.seek(0)
        sha256, size = sha256_of(archive.fp)
        for entry in manifest.files:
            digest = hashlib.sha256()
            for chunk in archive.read(entry.path):
                digest.update(chunk)
            _check_digest(entry, digest.hexdigest())
    logger.info(
        "verified archive %s: engine %s version %s, %d files, %.1f MB, in %.1fs",
        path, manifest.engine, manifest.version, len(manifest.files), size / 1e6, time.monotonic() - started,
    )
    return VerifiedArchive(path, manifest, size, sha256)


def peek_manifest(path: Path, limits: Limits = Limits()) -> Manifest:
    """The manifest of an archive after the structure checks only (no checksums):
    cheap, to learn an archive's version before deciding to verify and unpack it."""
    with open_zip(Path(path), limits) as archive:
        return _archive_manifest(archive)


def _archive_manifest(archive: SafeZip) -> Manifest:
    info = archive.members.get(MANIFEST_NAME)
    if info is None:
        raise InvalidArchive(f"archive has no {MANIFEST_NAME}: it is not an engine archive made by 'recsys build'")
    if info.file_size > MAX_MANIFEST_BYTES:
        raise InvalidArchive(f"{MANIFEST_NAME} is {info.file_size} bytes, over the limit of {MAX_MANIFEST_BYTES}")
    raw = b"".join(archive.read(MANIFEST_NAME, cap=MAX_MANIFEST_BYTES))
    return parse_manifest(raw)


def _match_members(archive: SafeZip, manifest: Manifest) -> None:
    listed = {entry.path: entry for entry in manifest.files}
    for name, info in archive.members.items():
        if name == MANIFEST_NAME:
            continue
        entry = listed.get(name)
        if entry is None:
            raise InvalidArchive(f"member {name!r} is not listed in the manifest")
        if info.file_size != entry.size:
            raise InvalidArchive(f"member {name!r} is {info.file_size} bytes, but the manifest says {entry.size}")
    for entry in manifest.files:
        if entry.path not in archive.members:
            raise InvalidArchive(f"manifest lists {entry.path!r}, but the archive has no such member")


def _check_digest(entry: FileEntry, actual: str) -> None:
    if actual != entry.sha256:
        raise InvalidArchive(
            f"member {entry.path!r} sha256 mismatch: manifest says {entry.sha256}, content is {actual}"
        )


# -- unpack ----------------------------------------------------------------------------


def unpack(
    path: Path,
    dest: Path,
    limits: Limits = Limits(),
    *,
    engines: Collection[str] | None = None,
    sha256: str | None = None,
) -> Manifest:
    """Verify, then extract into a temporary folder beside ``dest`` (checking sizes and
    sha256 again while writing) and rename it to ``dest`` atomically. ``dest`` must
    not exist. On any failure nothing is left behind.

    ``sha256``, when given, must be the archive file's (InvalidArchive otherwise).
    """
    verified = verify(path, limits, engines=engines)
    if sha256 is not None and sha256.lower() != verified.sha256:
        raise InvalidArchive(
            f"archive {str(path)!r} sha256 mismatch: expected {sha256}, file is {verified.sha256}"
        )
    return extract(verified, dest, limits)


def extract(verified: VerifiedArchive, dest: Path, limits: Limits = Limits()) -> Manifest:
    """The second half of :func:`unpack`: extract an archive :func:`verify` accepted.

    Files go into ``dest.parent/.tmp-unpack-<random>`` (each member hashed again while
    written, then fsynced), which is renamed to ``dest``; on any failure the temporary
    folder is removed. Raises StoreError when ``dest`` exists.
    """
    started = time.monotonic()
    dest = Path(dest)
    manifest = verified.manifest
    if dest.exists() or dest.is_symlink():
        raise StoreError(f"cannot unpack archive into {str(dest)!r}: it already exists; remove it or choose another")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest.parent, "unpack")
    tmp.mkdir()
    try:
        with open_zip(verified.path, limits) as archive:
            _match_members(archive, manifest)
            for entry in manifest.files:
                _extract_member(archive, entry, tmp)
        write_synced(tmp / MANIFEST_NAME, manifest.to_json())
        for folder in sorted({p.parent for p in tmp.rglob("*")}, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise StoreError(f"cannot move the unpacked engine into {str(dest)!r}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(dest.parent)
    logger.info(
        "unpacked engine %s version %s into %s in %.1fs",
        manifest.engine, manifest.version, dest, time.monotonic() - started,
    )
    return manifest


def _extract_member(archive: SafeZip, entry: FileEntry, root: Path) -> None:
    target = root.joinpath(*entry.path.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with create_synced(target) as out:
        for chunk in archive.read(entry.path):
            digest.update(chunk)
            out.write(chunk)
    _check_digest(entry, digest.hexdigest())


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an unpacked engine folder (``folder/manifest.json``)."""
    path = Path(folder) / MANIFEST_NAME
    try:
        with open(path, "rb") as fp:
            raw = fp.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise InvalidArchive(f"{str(folder)!r} has no {MANIFEST_NAME}: it is not an unpacked engine") from None
    except OSError as exc:
        raise InvalidArchive(f"cannot read {str(path)!r}: {exc}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidArchive(f"{str(path)!r} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return parse_manifest(raw, str(path))
    except InvalidArchive as exc:
        raise InvalidArchive(f"{str(path)!r}: {exc}") from exc
