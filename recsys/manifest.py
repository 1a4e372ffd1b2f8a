"""The engine archive's ``manifest.json``: its fields, their validation, and safe paths.

:class:`Manifest` is re-exported by :mod:`recsys.archive`, which packs, verifies and
unpacks the archives it describes. Every check raises
:class:`~recsys.errors.InvalidArchive` with a message naming the field or file and
the rule it breaks, e.g.::

    manifest.json: 'publications' must be a whole number >= 0, got '12' (str)
    archive format 2 is not supported by this recsys (supports 1); upgrade recsys

``version`` is the build's id and is derived from ``created_at`` (UTC, microseconds):
``2026-11-28T21:18:00.123456Z`` gives ``20261128T211800123456Z``. Both sort by time,
and ``version`` is safe as a directory name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

from recsys import jsontext
from recsys.errors import InvalidArchive
from recsys.registry import valid_engine_name

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "FileEntry",
    "Manifest",
    "new_version",
    "parse_manifest",
    "path_problem",
    "valid_version",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: The values of the manifest's optional ``kind``.
KINDS = ("build", "apply")

_VERSION = re.compile(r"^\d{8}T\d{12}Z$")
_CREATED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_PATH_CHARS = 1024
MAX_COMPONENT_CHARS = 255


def new_version(now: datetime | None = None) -> tuple[str, str]:
    """A new build's ``(version, created_at)`` from ``now`` (default: the current UTC time).

    ``version`` sorts like ``created_at``: ``20261128T211800123456Z``. ``now`` must be
    timezone-aware (a naive datetime is ambiguous).
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("new_version() needs a timezone-aware datetime, e.g. datetime.now(UTC)")
    now = now.astimezone(UTC)
    return now.strftime(_VERSION_FORMAT), now.strftime(_CREATED_AT_FORMAT)


def valid_version(version: str) -> bool:
    """Whether ``version`` has the form of a build id (``20261128T211800123456Z``)."""
    return bool(_VERSION.match(version))


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe relative file path inside an archive, or None.

    Safe: ``/``-separated, relative, no ``..``/``.``/empty component, no backslash,
    colon (drive letters, streams) or control character, at most 1024 characters and
    255 per component. The reason completes a sentence: ``member 'x' <reason>``.
    """
    if path == "":
        return "has an empty name"
    if len(path) > MAX_PATH_CHARS:
        return f"has a name longer than {MAX_PATH_CHARS} characters"
    if path.startswith("/"):
        return "is an absolute path"
    if "\\" in path:
        return "contains a backslash (paths must use '/')"
    if ":" in path:
        return "contains ':' (a drive letter or stream name)"
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        return "contains a control character"
    parts = path.split("/")
    if ".." in parts:
        return "escapes the archive"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    if any(len(part) > MAX_COMPONENT_CHARS for part in parts):
        return f"has a path component longer than {MAX_COMPONENT_CHARS} characters"
    return None


@dataclass(frozen=True)
class FileEntry:
    """One engine file of the archive: its relative path, size in bytes and sha256 (hex)."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


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
    #: The build's quality comparison with the engine then current (recsys.quality):
    #: ``{"against", "metrics": {name: {"new", "current"}}, "queries"}``; None when the
    #: build had nothing to compare with.
    quality: dict[str, Any] | None = None
    #: An example query from the engine's own corpus (``{"text", "publication_id"}``,
    #: :func:`recsys.build.corpus_example`): the API's Swagger examples use it. None for
    #: an archive without one (a generic example is shown then).
    example: dict[str, str] | None = None
    #: What made this version: ``"build"`` (a full build) or ``"apply"`` (a live-update
    #: apply of pushed publication changes); None for archives that do not say.
    kind: str | None = None
    #: The highest publication change id (the API's change log) this version includes;
    #: None when it does not say (such a version changes no change's status).
    changes_through: int | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate a decoded ``manifest.json``; unknown keys are ignored (a newer
        recsys may add optional fields within the same format)."""
        if not isinstance(data, Mapping):
            raise InvalidArchive(f"{MANIFEST_NAME} must hold a JSON object, got {_kind(data)}")
        fmt = data.get("format")
        if not _is_int(fmt):
            raise InvalidArchive(f"{MANIFEST_NAME}: 'format' must be a whole number, got {_shown(fmt)}")
        if fmt != FORMAT_VERSION:
            raise InvalidArchive(
                f"archive format {fmt} is not supported by this recsys (supports {FORMAT_VERSION}); upgrade recsys"
            )
        engine = _required_str(data, "engine")
        if not valid_engine_name(engine):
            raise InvalidArchive(
                f"{MANIFEST_NAME}: 'engine' {engine!r} is not an engine name "
                "(lowercase letters, digits, '_' or '-', starting with a letter)"
            )
        created_at = _required_str(data, "created_at")
        created = _parse_created_at(created_at)
        version = _required_str(data, "version")
        expected = created.strftime(_VERSION_FORMAT)
        if version != expected:
            raise InvalidArchive(
                f"{MANIFEST_NAME}: 'version' {version!r} does not match 'created_at' {created_at!r} "
                f"(expected {expected!r})"
            )
        extra = data.get("extra", {})
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise InvalidArchive(f"{MANIFEST_NAME}: 'extra' must be a JSON object, got {_kind(extra)}")
        dimension = _optional_int(data, "dimension", minimum=1)
        quality = _parse_quality(data.get("quality"))
        kind = _optional_str(data, "kind")
        if kind is not None and kind not in KINDS:
            raise InvalidArchive(f"{MANIFEST_NAME}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        changes_through = _optional_int(data, "changes_through", minimum=0)
        return cls(
            engine=engine,
            version=version,
            created_at=created_at,
            publications=_required_int(data, "publications"),
            sentences=_required_int(data, "sentences"),
            files=_parse_files(data.get("files")),
            engine_version=_optional_str(data, "engine_version"),
            recsys_version=_optional_str(data, "recsys_version"),
            model=_optional_str(data, "model"),
            dimension=dimension,
            extra=dict(extra),
            format=fmt,
            quality=quality,
            example=_parse_example(data.get("example")),
            kind=kind,
            changes_through=changes_through,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json`` (fields in the documented order)."""
        return {
            "format": self.format,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "recsys_version": self.recsys_version,
            "version": self.version,
            "created_at": self.created_at,
            "publications": self.publications,
            "sentences": self.sentences,
            "model": self.model,
            "dimension": self.dimension,
            "extra": dict(self.extra),
            **({} if self.quality is None else {"quality": self.quality}),
            **({} if self.example is None else {"example": dict(self.example)}),
            **({} if self.kind is None else {"kind": self.kind}),
            **({} if self.changes_through is None else {"changes_through": self.changes_through}),
            "files": [entry.to_dict() for entry in self.files],
        }

    def to_json(self) -> bytes:
        """``manifest.json``'s bytes (UTF-8, indented)."""
        return (json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")

    @property
    def created(self) -> datetime:
        """``created_at`` as an aware UTC datetime."""
        return _parse_created_at(self.created_at)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry | None:
        """The entry of ``path``, or None."""
        return next((entry for entry in self.files if entry.path == path), None)


def parse_manifest(raw: bytes, where: str = MANIFEST_NAME) -> Manifest:
    """Decode and validate ``manifest.json`` bytes. ``where`` names the file in errors.

    Rejects invalid UTF-8, invalid JSON, duplicate keys and NaN/Infinity.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArchive(f"{where} is not UTF-8 text: {exc}") from exc
    try:
        data = jsontext.loads(text)
    except ValueError as exc:
        raise InvalidArchive(f"{where} is not valid JSON: {exc}") from exc
    return Manifest.from_dict(data)


# -- helpers -------------------------------------------------------------------


def _parse_created_at(created_at: str) -> datetime:
    problem = f"{MANIFEST_NAME}: 'created_at' {created_at!r} is not a UTC time like '2026-11-28T21:18:00.123456Z'"
    if not _CREATED_AT.match(created_at):
        raise InvalidArchive(problem)
    try:
        return datetime.strptime(created_at, _CREATED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidArchive(f"{problem}: {exc}") from exc


def _parse_files(raw: Any) -> tuple[FileEntry, ...]:
    if not isinstance(raw, list):
        raise InvalidArchive(f"{MANIFEST_NAME}: 'files' must be a list of {{path, size, sha256}}, got {_kind(raw)}")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{MANIFEST_NAME}: files[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidArchive(f"{where} must be an object {{path, size, sha256}}, got {_kind(item)}")
        path = item.get("path")
        if not isinstance(path, str):
            raise InvalidArchive(f"{where}: 'path' must be a string, got {_shown(path)}")
        problem = path_problem(path)
        if problem is not None:
            raise InvalidArchive(f"{where}: file {path!r} {problem}")
        if path == MANIFEST_NAME:
            raise InvalidArchive(f"{where}: the manifest cannot list itself")
        if path in seen:
            raise InvalidArchive(f"{where}: file {path!r} is listed twice")
        seen.add(path)
        size = item.get("size")
        if not _is_int(size) or size < 0:
            raise InvalidArchive(f"{where}: 'size' of {path!r} must be a whole number >= 0, got {_shown(size)}")
        sha256 = item.get("sha256")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise InvalidArchive(f"{where}: 'sha256' of {path!r} must be 64 lowercase hex digits, got {_shown(sha256)}")
        entries.append(FileEntry(path, size, sha256))
    for path in seen:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in seen:
                raise InvalidArchive(f"{MANIFEST_NAME}: {parent!r} is listed as a file and as the folder of {path!r}")
            parent = parent.rpartition("/")[0]
    return tuple(entries)


#: The longest example text kept from a manifest.
MAX_EXAMPLE_CHARS = 1000


def _parse_example(value: Any) -> dict[str, str] | None:
    """The optional ``example``: its ``text`` and ``publication_id`` that are non-blank
    strings (a text up to :data:`MAX_EXAMPLE_CHARS`, an id up to 256 characters); an
    unusable example is dropped, not refused: it only illustrates the API."""
    if not isinstance(value, Mapping):
        return None
    limits = {"text": MAX_EXAMPLE_CHARS, "publication_id": 256}
    example = {key: item.strip() for key, item in value.items()
               if key in limits and isinstance(item, str) and item.strip() and len(item) <= limits[key]}
    return example or None


def _parse_quality(value: Any) -> dict[str, Any] | None:
    """The optional ``quality`` object: ``against`` (a version), ``metrics`` (each a pair of numbers)."""
    if value is None:
        return None
    where = f"{MANIFEST_NAME}: 'quality'"
    if not isinstance(value, Mapping):
        raise InvalidArchive(f"{where} must be a JSON object, got {_kind(value)}")
    if not isinstance(value.get("against"), str):
        raise InvalidArchive(f"{where}.against must be the engine version compared with")
    metrics = value.get("metrics")
    if not isinstance(metrics, Mapping):
        raise InvalidArchive(f"{where}.metrics must be a JSON object")
    for name, pair in metrics.items():
        if not (isinstance(pair, Mapping) and all(
                isinstance(pair.get(side), int | float) and not isinstance(pair.get(side), bool)
                for side in ("new", "current"))):
            raise InvalidArchive(f"{where}.metrics.{name} must be {{\"new\": number, \"current\": number}}")
    return dict(value)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArchive(f"{MANIFEST_NAME}: {key!r} must be a non-empty string, got {_shown(value)}")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArchive(f"{MANIFEST_NAME}: {key!r} must be a string or null, got {_shown(value)}")
    return value


def _required_int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not _is_int(value) or value < 0:
        raise InvalidArchive(f"{MANIFEST_NAME}: {key!r} must be a whole number >= 0, got {_shown(value)}")
    return int(value)


def _optional_int(data: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise InvalidArchive(
            f"{MANIFEST_NAME}: {key!r} must be a whole number >= {minimum} or null, got {_shown(value)}"
        )
    return int(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    if value is None:
        return "nothing (missing or null)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
