"""Hand-made zip files for the archive tests: every header field under the test's control.

``zipfile`` refuses to write most of what a hostile archive holds (lying sizes,
overlapping members, odd flags), so :func:`craft_zip` writes local headers, data,
central directory and end record itself. :func:`manifest_json` makes a valid
manifest for given files; :func:`deflated_zeros` streams a zip-bomb payload.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORED = 0
DEFLATED = 8
REGULAR = 0o100644
SYMLINK = 0o120777
FIFO = 0o010644
DIRECTORY = 0o040755
VERSION = "20261128T211800123456Z"
CREATED_AT = "2026-11-28T21:18:00.123456Z"


@dataclass
class Raw:
    """One member as it will be written. ``data`` is the content; ``compressed``
    (raw deflate) overrides it; ``size``/``crc`` override the declared values;
    ``compressed_size`` overrides the declared compressed size; ``offset_of`` makes
    the central directory point at another member's local header."""

    name: str | bytes
    data: bytes = b""
    method: int = STORED
    compressed: bytes | None = None
    size: int | None = None
    crc: int | None = None
    flags: int = 0
    mode: int = REGULAR
    create_system: int = 3
    compressed_size: int | None = None
    offset_of: str | None = None


def deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def deflated_zeros(size: int) -> tuple[bytes, int, str]:
    """(raw deflate data, crc32, sha256) of ``size`` zero bytes, made in chunks."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts, crc, digest, left = [], 0, hashlib.sha256(), size
    while left > 0:
        piece = chunk[: min(left, len(chunk))]
        parts.append(packer.compress(piece))
        crc = zlib.crc32(piece, crc)
        digest.update(piece)
        left -= len(piece)
    parts.append(packer.flush())
    return b"".join(parts), crc, digest.hexdigest()


def craft_zip(path: Path, members: list[Raw]) -> Path:
    body = bytearray()
    directory = bytearray()
    offsets: dict[str, int] = {}
    for m in members:
        name = m.name.encode("utf-8") if isinstance(m.name, str) else m.name
        flags = m.flags | (0x800 if isinstance(m.name, str) and not m.name.isascii() else 0)
        if m.compressed is not None:
            payload = m.compressed
        else:
            payload = deflate(m.data) if m.method == DEFLATED else m.data
        size = len(m.data) if m.size is None else m.size
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        csize = len(payload) if m.compressed_size is None else m.compressed_size
        key = m.name if isinstance(m.name, str) else m.name.decode("latin-1")
        if m.offset_of is not None:
            offset = offsets[m.offset_of]
        else:
            offset = len(body)
            offsets[key] = offset
            body += struct.pack(
                "<4s5H3I2H", b"PK\x03\x04", 20, flags, m.method, 0, 0x5B7C, crc, csize, size, len(name), 0
            )
            body += name + payload
        directory += struct.pack(
            "<4s6H3I5H2I",
            b"PK\x01\x02",
            (m.create_system << 8) | 20,
            20,
            flags,
            m.method,
            0,
            0x5B7C,
            crc,
            csize,
            size,
            len(name),
            0,
            0,
            0,
            0,
            (m.mode << 16) & 0xFFFFFFFF,
            offset,
        )
        directory += name
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))
    return path


def entry(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest_json(files: list[dict[str, Any]], **fields: Any) -> bytes:
    """A valid manifest (engine ``tiny``) listing ``files`` ({path, size, sha256})."""
    data: dict[str, Any] = {
        "format": 1,
        "engine": "tiny",
        "engine_version": "1.0",
        "recsys_version": "0.1.0",
        "version": VERSION,
        "created_at": CREATED_AT,
        "publications": 2,
        "sentences": 4,
        "model": None,
        "dimension": None,
        "extra": {},
        "files": files,
    }
    data.update(fields)
    return json.dumps(data).encode("utf-8")


def archive_of(path: Path, files: dict[str, bytes], **fields: Any) -> Path:
    """A well-formed archive of ``files`` with a matching manifest (the baseline
    that each hostile variant changes in one way)."""
    manifest = manifest_json([entry(name, data) for name, data in files.items()], **fields)
    members = [Raw("manifest.json", manifest, DEFLATED)] + [Raw(n, d) for n, d in files.items()]
    return craft_zip(path, members)
