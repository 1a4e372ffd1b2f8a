"""Reading an untrusted zip file safely: structure checks, then members by streaming.

:func:`open_zip` checks everything the central directory and the local headers
tell, before any member is inflated: the file's size, the number of entries
(read from the end record before the directory is parsed), every member's name
(:func:`recsys.manifest.path_problem`), type (no links, no special files, only
plain directory entries), flags (no encryption), compression method (stored or
deflated only), declared size and compression ratio, duplicates, and that no two
members' data overlap (the "overlapping files" zip bomb).

:func:`read_member` then streams one member's content in chunks with its own
inflater, never trusting the header: a member that inflates past its declared
size, past the ratio limit, or whose CRC-32 or length differ is rejected as soon
as that is known, without writing or holding it all. Every problem raises
:class:`~recsys.errors.InvalidArchive` naming the member and the rule.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from recsys.errors import InvalidArchive
from recsys.fsutil import CHUNK
from recsys.manifest import path_problem

__all__ = ["CHUNK", "RATIO_FLOOR", "SafeZip", "ZipLimits", "open_zip", "read_member"]

#: Members that inflate to at most this many bytes are exempt from the ratio limit:
#: they cannot hurt, and small JSON files of repeated keys compress very well.
RATIO_FLOOR = 1 << 20
#: Central-directory bytes allowed per entry (a real entry takes ~100).
_DIRECTORY_BYTES_PER_ENTRY = 4096

_END = b"PK\x05\x06"
_END_SIZE = 22
_END64_LOCATOR = b"PK\x06\x07"
_END64 = b"PK\x06\x06"
_LOCAL = b"PK\x03\x04"
_LOCAL_SIZE = 30
_ENCRYPTED = 0x1
_STRONG_ENCRYPTION = 0x40
_UTF8_NAME = 0x800
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


class ZipLimits(Protocol):
    """What :func:`open_zip` accepts (:class:`recsys.archive.Limits` has these)."""

    @property
    def max_bytes(self) -> int: ...
    @property
    def max_file_bytes(self) -> int: ...
    @property
    def max_entries(self) -> int: ...
    @property
    def max_ratio(self) -> int: ...


@dataclass(frozen=True)
class SafeZip:
    """A zip file that passed the structure checks, open for :func:`read_member`.

    ``members``: the file members by name (directory entries left out); ``spans``:
    where each file member's compressed data lies, ``(start, end)`` offsets.
    """

    path: Path
    fp: IO[bytes]
    size: int
    members: dict[str, zipfile.ZipInfo]
    spans: dict[str, tuple[int, int]]
    max_ratio: int

    def read(self, name: str, *, cap: int | None = None) -> Iterator[bytes]:
        """Stream member ``name`` (see :func:`read_member`)."""
        info = self.members[name]
        return read_member(self.fp, info, self.spans[name], cap=cap, max_ratio=self.max_ratio)


@contextmanager
def open_zip(path: Path, limits: ZipLimits) -> Iterator[SafeZip]:
    """Open ``path`` and check its structure (see the module docstring); the file is
    closed when the block ends."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidArchive(f"archive {str(path)!r} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidArchive(f"archive {str(path)!r} is not a regular file")
    if info.st_size > limits.max_bytes:
        raise InvalidArchive(
            f"archive {str(path)!r} is {info.st_size} bytes, over the limit of {limits.max_bytes} "
            "(RECSYS_ARCHIVE_MAX_BYTES)"
        )
    with open(path, "rb") as fp:
        _check_end_record(fp, info.st_size, limits.max_entries)
        try:
            archive = zipfile.ZipFile(fp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError) as exc:
            # UnicodeDecodeError (a name flagged UTF-8 that is not) is a ValueError.
            raise InvalidArchive(f"archive {str(path)!r} is not a readable zip file: {exc}") from exc
        with archive:
            infos = archive.infolist()
            if len(infos) > limits.max_entries:
                raise InvalidArchive(
                    f"archive has {len(infos)} entries, over the limit of {limits.max_entries} "
                    "(RECSYS_ARCHIVE_MAX_ENTRIES)"
                )
            members = _check_entries(infos, limits)
            spans = _data_spans(fp, members, archive.start_dir)
            yield SafeZip(path, fp, info.st_size, members, spans, limits.max_ratio)


def read_member(
    fp: IO[bytes], info: zipfile.ZipInfo, span: tuple[int, int], *, cap: int | None = None, max_ratio: int
) -> Iterator[bytes]:
    """Yield the content of one member in chunks of at most :data:`CHUNK` bytes.

    Raises InvalidArchive as soon as the content exceeds ``cap`` or its declared
    size, inflates more than ``max_ratio`` times its compressed size (past
    :data:`RATIO_FLOOR`), or when the stream is truncated, corrupt, of another
    length than declared, or fails its CRC-32.
    """
    name = info.filename
    limit = info.file_size if cap is None else min(cap, info.file_size)
    start, end = span
    compressed = end - start
    produced = 0
    crc = 0
    fp.seek(start)
    for chunk in _inflate(fp, info, compressed):
        produced += len(chunk)
        if produced > limit:
            if limit < info.file_size:
                raise InvalidArchive(f"member {name!r} is larger than the {limit} bytes allowed")
            raise InvalidArchive(f"member {name!r} inflates past its declared size of {info.file_size} bytes")
        if produced > RATIO_FLOOR and produced > max_ratio * max(compressed, 1):
            raise InvalidArchive(
                f"member {name!r} inflates more than {max_ratio}x (limit {max_ratio}x): a zip bomb?"
            )
        crc = zlib.crc32(chunk, crc)
        yield chunk
    if produced != info.file_size:
        raise InvalidArchive(f"member {name!r} is {produced} bytes, but its header says {info.file_size}")
    if crc != info.CRC:
        raise InvalidArchive(f"member {name!r} fails its CRC-32 check: the archive is corrupt")


# -- structure ---------------------------------------------------------------------


def _check_end_record(fp: IO[bytes], size: int, max_entries: int) -> None:
    """Read the entry count and directory size from the end record before zipfile
    parses (and holds) the whole central directory."""
    tail_size = min(size, _END_SIZE + 0xFFFF)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(_END)
    if at < 0 or len(tail) - at < _END_SIZE:
        raise InvalidArchive("not a zip file (no end of central directory record): truncated, or another format")
    entries, directory_size = struct.unpack("<HI", tail[at + 10 : at + 16])
    if (entries == 0xFFFF or directory_size == 0xFFFFFFFF) and at >= 20 and tail[at - 20 : at - 16] == _END64_LOCATOR:
        (end64_offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
        if end64_offset + 56 <= size:
            fp.seek(end64_offset)
            record = fp.read(56)
            if record[:4] == _END64:
                entries, directory_size = struct.unpack("<QQ", record[32:48])
    if entries > max_entries:
        raise InvalidArchive(
            f"archive has {entries} entries, over the limit of {max_entries} (RECSYS_ARCHIVE_MAX_ENTRIES)"
        )
    if directory_size > (entries + 1) * _DIRECTORY_BYTES_PER_ENTRY:
        raise InvalidArchive(f"archive's central directory is {directory_size} bytes, too large for {entries} entries")
    fp.seek(0)


def _check_entries(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> dict[str, zipfile.ZipInfo]:
    files: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = _entry_problem(info)
        if problem is not None:
            raise InvalidArchive(f"member {info.orig_filename!r} {problem}")
        is_dir = info.filename.endswith("/")
        name = info.filename.rstrip("/") if is_dir else info.filename
        if name in seen:
            raise InvalidArchive(f"member {info.filename!r} appears more than once")
        seen.add(name)
        if is_dir:
            continue
        if info.file_size > limits.max_file_bytes:
            raise InvalidArchive(
                f"member {name!r} is {info.file_size} bytes, over the per-file limit of {limits.max_file_bytes} "
                "(RECSYS_ARCHIVE_MAX_FILE_BYTES)"
            )
        total += info.file_size
        if total > limits.max_bytes:
            raise InvalidArchive(
                f"archive unpacks to more than {limits.max_bytes} bytes (RECSYS_ARCHIVE_MAX_BYTES)"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > limits.max_ratio:
            raise InvalidArchive(f"member {name!r} inflates {ratio:.0f}x (limit {limits.max_ratio}x): a zip bomb?")
        files[name] = info
    return files


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is refused (completing "member 'x' ..."), or None."""
    if info.orig_filename != info.filename:
        return "has a NUL byte in its name"
    if not info.flag_bits & _UTF8_NAME and not info.orig_filename.isascii():
        return "has a non-ASCII name that is not marked as UTF-8"
    if info.flag_bits & (_ENCRYPTED | _STRONG_ENCRYPTION):
        return "is encrypted"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    is_dir = info.filename.endswith("/")
    if is_dir:
        if kind not in (0, stat.S_IFDIR) or info.file_size != 0:
            return "is a directory entry with content or an odd file type"
    elif kind not in (0, stat.S_IFREG):
        return f"is not a regular file (file type {kind:#o})"
    if info.compress_type not in _METHODS:
        return f"uses compression method {info.compress_type} (only stored and deflated are allowed)"
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        return "is stored uncompressed, but its compressed and real sizes differ"
    return path_problem(info.filename.rstrip("/") if is_dir else info.filename)


def _data_spans(fp: IO[bytes], members: dict[str, zipfile.ZipInfo], directory: int) -> dict[str, tuple[int, int]]:
    """Where each member's data lies, from its local header; refuse overlaps."""
    spans: dict[str, tuple[int, int]] = {}
    for name, info in members.items():
        if not 0 <= info.header_offset < directory:
            raise InvalidArchive(f"member {name!r} lies outside the archive's data: the archive is truncated")
        fp.seek(info.header_offset)
        header = fp.read(_LOCAL_SIZE)
        if len(header) != _LOCAL_SIZE or header[:4] != _LOCAL:
            raise InvalidArchive(f"member {name!r} has no valid local header: the archive is truncated or corrupt")
        flags = struct.unpack("<H", header[6:8])[0]
        name_size, extra_size = struct.unpack("<HH", header[26:30])
        local_name = fp.read(name_size)
        encoding = "utf-8" if info.flag_bits & _UTF8_NAME else "cp437"
        if local_name != info.orig_filename.encode(encoding):
            raise InvalidArchive(f"member {name!r} has another name in its local header ({local_name!r})")
        if flags & (_ENCRYPTED | _STRONG_ENCRYPTION):
            raise InvalidArchive(f"member {name!r} is encrypted")
        start = info.header_offset + _LOCAL_SIZE + name_size + extra_size
        spans[name] = (start, start + info.compress_size)
    previous_end, previous = 0, ""
    for name, (_start, end) in sorted(spans.items(), key=lambda item: item[1]):
        if members[name].header_offset < previous_end:
            raise InvalidArchive(f"member {name!r} overlaps member {previous!r}: a zip bomb?")
        if end > directory:
            raise InvalidArchive(f"member {name!r} runs past the end of the data: the archive is truncated or corrupt")
        previous_end, previous = end, name
    return spans


# -- content -----------------------------------------------------------------------


def _inflate(fp: IO[bytes], info: zipfile.ZipInfo, compressed: int) -> Iterator[bytes]:
    """The member's content in chunks of at most CHUNK bytes (compressed data at fp)."""
    name = info.filename
    remaining = compressed
    if info.compress_type == zipfile.ZIP_STORED:
        while remaining > 0:
            chunk = fp.read(min(CHUNK, remaining))
            if not chunk:
                raise InvalidArchive(f"member {name!r} is truncated")
            remaining -= len(chunk)
            yield chunk
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        while not inflater.eof:
            if inflater.unconsumed_tail:
                data = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            elif remaining > 0:
                raw = fp.read(min(CHUNK, remaining))
                if not raw:
                    raise InvalidArchive(f"member {name!r} is truncated")
                remaining -= len(raw)
                data = inflater.decompress(raw, CHUNK)
            else:
                data = inflater.decompress(b"", CHUNK)  # output still pending inside zlib
                if not data:
                    raise InvalidArchive(f"member {name!r} is truncated: its compressed stream does not end")
            if data:
                yield data
    except zlib.error as exc:
        raise InvalidArchive(f"member {name!r} is corrupt: {exc}") from exc
    if remaining > 0 or inflater.unused_data:
        raise InvalidArchive(f"member {name!r} has data after the end of its compressed stream")
