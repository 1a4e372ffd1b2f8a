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
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from recsys import __version__
from recsys.config import Settings
from recsys.engine import EngineMetadata
from recsys.errors import InvalidArchive, MissingFiles, StoreError
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
    "Readable",
    "VerifiedArchive",
    "extract",
    "file_sha256",
    "new_version",
    "pack",
    "peek_manifest",
    "read_manifest",
    "thin_copy",
    "unpack",
    "write_archive",
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
    """An archive that passed :func:`verify` (or was written by :func:`pack`): its
    manifest, size and sha256, the manifest's exact bytes and their sha256 (the
    engine version's identity, the same in a thin and a full archive of it), and the
    paths of the files it carries (all of them unless it is thin)."""

    path: Path
    manifest: Manifest
    size: int
    sha256: str
    manifest_bytes: bytes = b""
    members: frozenset[str] = frozenset()

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def thin(self) -> bool:
        """Whether the archive leaves out some of the files its manifest lists."""
        return len(self.members) < len(self.manifest.files)


class Readable(Protocol):
    """What :func:`write_archive` reads a file's bytes from (an open binary file, say)."""

    def read(self, size: int = -1, /) -> bytes: ...


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
    leave_out: Collection[str] = (),
    quality: dict[str, Any] | None = None,
    example: dict[str, str] | None = None,
    kind: str | None = None,
    changes_through: int | None = None,
) -> VerifiedArchive:
    """Pack every regular file under ``folder`` (an Engine.save output) into the zip
    ``out`` with a manifest; written to a temporary name then renamed. Returns the
    archive with its manifest, size and sha256. Files whose sha256 is in ``leave_out``
    are listed in the manifest but not carried (a thin archive, :func:`write_archive`).

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
        quality=quality,
        example=example,
        kind=kind,
        changes_through=changes_through,
    )
    try:
        manifest_bytes = manifest.to_json()
    except (TypeError, ValueError) as exc:
        raise InvalidArchive(f"cannot pack: the engine's metadata 'extra' is not plain JSON: {exc}") from exc
    parse_manifest(manifest_bytes, "the manifest being packed")  # the same checks as verify
    packed = write_archive(out, manifest_bytes, manifest, lambda entry: open(folder / entry.path, "rb"),
                           leave_out=leave_out)
    logger.info(
        "packed engine %s version %s: %d files, %.1f MB into %s (%.1f MB%s) in %.1fs",
        engine, version, len(entries), manifest.total_size / 1e6, out, packed.size / 1e6,
        f", thin: {len(packed.members)} files carried" if packed.thin else "", time.monotonic() - started,
    )
    return packed


def write_archive(
    out: Path,
    manifest_bytes: bytes,
    manifest: Manifest,
    open_file: Callable[[FileEntry], AbstractContextManager[Readable]],
    *,
    leave_out: Collection[str] = (),
) -> VerifiedArchive:
    """Write the zip ``out`` (atomically) of the engine version ``manifest`` (whose exact
    bytes are ``manifest_bytes``): the manifest, then each listed file in the manifest's
    order, read from ``open_file(entry)``, except those whose sha256 is in ``leave_out``
    (a *thin* archive). The bytes depend only on the inputs (fixed timestamps from
    ``created_at``, fixed modes and compression), so the same version always gives
    the same archive: the API's full archive keeps its ETag and Range offsets.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped = set(leave_out)
    carried = [entry for entry in manifest.files if entry.sha256 not in skipped]
    with atomic_output(out, prefix=out.name) as raw:
        with zipfile.ZipFile(raw, "w", allowZip64=True) as archive:
            date_time = _zip_time(manifest.created)
            info = zipfile.ZipInfo(MANIFEST_NAME, date_time)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, _FILE_MODE
            archive.writestr(info, manifest_bytes)
            for entry in carried:
                with open_file(entry) as source:
                    _copy_into(archive, source, entry, date_time)
        raw.flush()
        raw.seek(0)
        sha256, size = sha256_of(raw)
    return VerifiedArchive(out, manifest, size, sha256, manifest_bytes, frozenset(e.path for e in carried))


def thin_copy(
    source: VerifiedArchive, out: Path, leave_out: Collection[str], limits: Limits = Limits()
) -> VerifiedArchive:
    """A thin archive ``out`` of the version in the verified archive ``source``: the same
    manifest bytes, without the files whose sha256 is in ``leave_out`` (the receiver
    holds them). Members are checked again while copied."""
    with open_zip(source.path, limits) as archive:
        return write_archive(out, source.manifest_bytes, source.manifest,
                             lambda entry: _ZipMember(archive, entry), leave_out=leave_out)


class _ZipMember:
    """A member of an open SafeZip as a readable file whose bytes are checked at the end."""

    def __init__(self, archive: SafeZip, entry: FileEntry) -> None:
        self._chunks = archive.read(entry.path)
        self._entry = entry
        self._digest = hashlib.sha256()
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._digest.update(chunk)
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        if not data:
            _check_digest(self._entry, self._digest.hexdigest())
        return data

    def __enter__(self) -> _ZipMember:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


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
    archive: zipfile.ZipFile, src: Readable, entry: FileEntry, date_time: tuple[int, int, int, int, int, int]
) -> None:
    info = zipfile.ZipInfo(entry.path, date_time)
    info.external_attr = _FILE_MODE
    info.file_size = entry.size  # lets zipfile choose ZIP64 for files over 2 GB
    text = Path(entry.path).suffix.lower() in TEXT_SUFFIXES
    info.compress_type = zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED
    copied = 0
    with archive.open(info, "w") as dst:
        while chunk := src.read(CHUNK):
            copied += len(chunk)
            dst.write(chunk)
    if copied != entry.size:
        raise InvalidArchive(f"cannot pack {entry.path!r}: it changed size while being packed")


# -- verify ----------------------------------------------------------------------------


def verify(
    path: Path,
    limits: Limits = Limits(),
    *,
    engines: Collection[str] | None = None,
    have: Callable[[FileEntry], bool] | None = None,
) -> VerifiedArchive:
    """Check an archive completely without unpacking it; raise InvalidArchive(reason).

    ``engines``: the installed engine names (CLI, workers); None (the API) checks
    the engine name's form only. ``have``: accept a *thin* archive, whose manifest
    lists files it does not carry, when ``have(entry)`` says the receiver holds each
    of them (by sha256 and size); MissingFiles (409) names those it does not.
    Without ``have`` every listed file must be carried.
    """
    started = time.monotonic()
    path = Path(path)
    with open_zip(path, limits) as archive:
        manifest_bytes = _manifest_bytes(archive)
        manifest = parse_manifest(manifest_bytes)
        _match_members(archive, manifest, have=have)
        if engines is not None and manifest.engine not in engines:
            installed = ", ".join(sorted(engines)) or "none"
            raise InvalidArchive(
                f"archive is for engine {manifest.engine!r}, which is not installed here (installed: {installed}); "
                f"install its plugin, e.g. 'pip install -e plugins/recsys-engine-{manifest.engine}'"
            )
        archive.fp.seek(0)
        sha256, size = sha256_of(archive.fp)
        members = frozenset(e.path for e in manifest.files if e.path in archive.members)
        for entry in manifest.files:
            if entry.path not in members:
                continue
            digest = hashlib.sha256()
            for chunk in archive.read(entry.path):
                digest.update(chunk)
            _check_digest(entry, digest.hexdigest())
    logger.info(
        "verified archive %s: engine %s version %s, %d files (%d carried), %.1f MB, in %.1fs",
        path, manifest.engine, manifest.version, len(manifest.files), len(members), size / 1e6,
        time.monotonic() - started,
    )
    return VerifiedArchive(path, manifest, size, sha256, manifest_bytes, members)


def peek_manifest(path: Path, limits: Limits = Limits()) -> Manifest:
    """The manifest of an archive after the structure checks only (no checksums):
    cheap, to learn an archive's version before deciding to verify and unpack it."""
    with open_zip(Path(path), limits) as archive:
        return _archive_manifest(archive)


def _archive_manifest(archive: SafeZip) -> Manifest:
    return parse_manifest(_manifest_bytes(archive))


def _manifest_bytes(archive: SafeZip) -> bytes:
    info = archive.members.get(MANIFEST_NAME)
    if info is None:
        raise InvalidArchive(f"archive has no {MANIFEST_NAME}: it is not an engine archive made by 'recsys build'")
    if info.file_size > MAX_MANIFEST_BYTES:
        raise InvalidArchive(f"{MANIFEST_NAME} is {info.file_size} bytes, over the limit of {MAX_MANIFEST_BYTES}")
    return b"".join(archive.read(MANIFEST_NAME, cap=MAX_MANIFEST_BYTES))


def _match_members(archive: SafeZip, manifest: Manifest, *, have: Callable[[FileEntry], bool] | None = None) -> None:
    listed = {entry.path: entry for entry in manifest.files}
    for name, info in archive.members.items():
        if name == MANIFEST_NAME:
            continue
        entry = listed.get(name)
        if entry is None:
            raise InvalidArchive(f"member {name!r} is not listed in the manifest")
        if info.file_size != entry.size:
            raise InvalidArchive(f"member {name!r} is {info.file_size} bytes, but the manifest says {entry.size}")
    absent = [entry for entry in manifest.files if entry.path not in archive.members]
    if have is None:
        if absent:
            raise InvalidArchive(
                f"manifest lists {absent[0].path!r}, but the archive has no such member"
                + (f" (and {len(absent) - 1} more: a thin archive? only a receiver holding them accepts it)"
                   if len(absent) > 1 else "")
            )
        return
    missing = [entry for entry in absent if not have(entry)]
    if missing:
        named = ", ".join(f"{e.path!r} (sha256 {e.sha256[:12]}..., {e.size} bytes)" for e in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise MissingFiles(
            f"the thin archive leaves out {len(missing)} file(s) this store does not hold: {named}{more}; "
            "send them too (upload the full archive)",
            [e.to_dict() for e in missing],
        )


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
        write_synced(tmp / MANIFEST_NAME, verified.manifest_bytes or manifest.to_json())
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
