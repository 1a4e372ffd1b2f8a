"""The engine folder: ``engine.json``, its segments and their tombstones.

::

    engine.json                  EngineInfo: format 2, model (name, sha256), backend, dimension,
                                 live counts, index settings, the live segments in order (with
                                 their counts and tombstones), the next segment number, the
                                 merge policy and what the last build did
    segments/<id>/...            one folder per segment, immutable (recsys_engine_annoy.segments)
    tombstones/<id>.npy          int32, sorted: the tombstoned rows of segment <id> (only where any)

Segment ids are ``s`` and six digits, counted on from the previous engine's (a merged or
new segment always gets a new one), so two versions never hold different segments under
one name. Only ``engine.json`` and the tombstone files of segments that lost publications
change when segments are kept.

A first-wave engine (format 1: the segment files at the top, no segments) is read as one
segment without tombstones or fingerprints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.errors import EngineLoadError
from recsys_engine_annoy import storage
from recsys_engine_annoy.files import load_array, save_array
from recsys_engine_annoy.segments import IndexRule, Segment, read_segment

__all__ = ["FORMAT", "EngineInfo", "SegmentEntry", "read_engine", "read_info", "segment_name", "write_engine"]

FORMAT = 2
LEGACY_FORMAT = 1
INFO_FILE = "engine.json"
SEGMENTS_DIR = "segments"
TOMBSTONES_DIR = "tombstones"
#: The id a first-wave engine's only segment is known by.
LEGACY_SEGMENT = "s000000"


def segment_name(number: int) -> str:
    return f"s{number:06d}"


@dataclass(frozen=True)
class SegmentEntry:
    """A live segment as ``engine.json`` lists it."""

    id: str
    publications: int
    sentences: int
    deleted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "publications": self.publications, "sentences": self.sentences,
                "deleted": self.deleted}


@dataclass(frozen=True)
class EngineInfo:
    """``engine.json``: what the saved engine is and how it was made."""

    model: str
    model_sha256: str
    backend: str
    dimension: int
    #: Live publications and their sentences (tombstoned ones are not counted).
    publications: int
    sentences: int
    #: ``RECSYS_ANNOY_TREES`` / ``RECSYS_ANNOY_SEARCH_K`` as set for the build (0: derived per segment).
    trees: int = 0
    search_k: int = 0
    segments: tuple[SegmentEntry, ...] = ()
    next_segment: int = 1
    merge_policy: dict[str, Any] = field(default_factory=dict)
    last_build: dict[str, Any] = field(default_factory=dict)
    vector_dtype: str = storage.VECTOR_DTYPE
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT
    #: A first-wave engine's index settings (format 1 only), for its one segment.
    legacy_indexes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "backend": self.backend,
            "dimension": self.dimension,
            "vector_dtype": self.vector_dtype,
            "publications": self.publications,
            "sentences": self.sentences,
            "index_settings": {"trees": self.trees, "search_k": self.search_k},
            "segments": [s.to_dict() for s in self.segments],
            "next_segment": self.next_segment,
            "merge_policy": self.merge_policy,
            "last_build": self.last_build,
            "versions": self.versions,
        }

    @property
    def rule(self) -> IndexRule:
        """Which segments are searched with Annoy (the build's settings, this code's sizes)."""
        return IndexRule(trees=self.trees, search_k=self.search_k)

    @classmethod
    def from_dict(cls, data: Any, where: str = INFO_FILE) -> EngineInfo:
        """Parse and check ``engine.json`` (format 2, or a first-wave format 1); EngineLoadError
        says which field is wrong."""
        if not isinstance(data, dict):
            raise EngineLoadError(f"{where} is not a JSON object; rebuild the engine")
        found = data.get("format")
        if found not in (FORMAT, LEGACY_FORMAT):
            raise EngineLoadError(
                f"{where} has format {found!r}; this plugin reads formats {LEGACY_FORMAT} and {FORMAT}: rebuild the "
                "engine or install the plugin version that built it"
            )
        try:
            common: dict[str, Any] = {
                "model": _field(data, "model", str),
                "model_sha256": _field(data, "model_sha256", str),
                "backend": _field(data, "backend", str),
                "dimension": _field(data, "dimension", int),
                "publications": _field(data, "publications", int),
                "sentences": _field(data, "sentences", int),
                "vector_dtype": _field(data, "vector_dtype", str),
                "versions": {str(k): str(v) for k, v in dict(data.get("versions") or {}).items()},
                "format": found,
            }
            if found == LEGACY_FORMAT:
                indexes = {"publication_index": dict(_field(data, "publication_index", dict)),
                           "sentence_index": dict(_field(data, "sentence_index", dict))}
                info = cls(**common, search_k=int(indexes["publication_index"].get("search_k", 0)),
                           segments=(SegmentEntry(LEGACY_SEGMENT, common["publications"], common["sentences"]),),
                           legacy_indexes=indexes)
            else:
                settings = _field(data, "index_settings", dict)
                entries = tuple(
                    SegmentEntry(_field(e, "id", str), _field(e, "publications", int), _field(e, "sentences", int),
                                 _field(e, "deleted", int))
                    for e in _field(data, "segments", list)
                )
                info = cls(**common, trees=int(settings["trees"]), search_k=int(settings["search_k"]),
                           segments=entries, next_segment=_field(data, "next_segment", int),
                           merge_policy=dict(data.get("merge_policy") or {}),
                           last_build=dict(data.get("last_build") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EngineLoadError(f"{where} is malformed: {exc}; rebuild the engine") from exc
        if info.dimension <= 0 or info.publications <= 0 or info.sentences < info.publications:
            raise EngineLoadError(f"{where} has impossible counts or dimension; rebuild the engine")
        if not info.segments or len({s.id for s in info.segments}) != len(info.segments) or any(
            not (0 <= s.deleted < s.publications) for s in info.segments
        ):
            raise EngineLoadError(f"{where} lists impossible segments; rebuild the engine")
        if sum(s.publications - s.deleted for s in info.segments) != info.publications:
            raise EngineLoadError(f"{where}: its segments' live publications do not add up; rebuild the engine")
        return info


def _field(data: Any, name: str, kind: type) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"expected an object holding {name!r}")
    if name not in data:
        raise KeyError(f"missing {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def read_info(folder: Path) -> EngineInfo:
    path = folder / INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineLoadError(
            f"{folder} holds no {INFO_FILE}: it is not a saved 'annoy' engine (or it is incomplete)"
        ) from None
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"cannot read {path}: {exc}; rebuild the engine") from exc
    return EngineInfo.from_dict(data)


def read_engine(folder: Path, info: EngineInfo) -> tuple[list[Segment], list[NDArray[np.int64]]]:
    """The segments of the engine in ``folder`` (memory-mapped) and each one's tombstoned rows."""
    rule = info.rule
    if info.format == LEGACY_FORMAT:
        described = {"id": LEGACY_SEGMENT, "publications": info.publications, "fingerprints": False,
                     **info.legacy_indexes}
        segment = read_segment(folder, LEGACY_SEGMENT, dimension=info.dimension, rule=rule, described=described)
        if segment.sentences != info.sentences:
            raise EngineLoadError(f"{storage.STARTS_FILE} in {folder} says {segment.sentences} sentences, "
                                  f"{INFO_FILE} {info.sentences}; the engine folder is damaged")
        return [segment], [np.empty(0, dtype=np.int64)]
    segments: list[Segment] = []
    deleted: list[NDArray[np.int64]] = []
    try:
        for entry in info.segments:
            segment = read_segment(folder / SEGMENTS_DIR / entry.id, entry.id, dimension=info.dimension, rule=rule,
                                   publications=entry.publications)
            segments.append(segment)
            deleted.append(_read_tombstones(folder, entry))
    except BaseException:
        for segment in segments:
            segment.close()
        raise
    return segments, deleted


def _read_tombstones(folder: Path, entry: SegmentEntry) -> NDArray[np.int64]:
    if entry.deleted == 0:
        return np.empty(0, dtype=np.int64)
    rows = load_array(folder / TOMBSTONES_DIR / f"{entry.id}.npy", dtype="int32", ndim=1).astype(np.int64)
    if len(rows) != entry.deleted or (len(rows) and (rows[0] < 0 or rows[-1] >= entry.publications
                                                     or np.any(np.diff(rows) <= 0))):
        raise EngineLoadError(f"the tombstones of segment {entry.id} are damaged; rebuild the engine")
    return rows


def write_engine(folder: Path, info: EngineInfo, segments: Sequence[Segment],
                 deleted: Sequence[NDArray[np.int64]]) -> None:
    """Write every segment (kept ones hard-linked or copied byte for byte), the tombstones
    and ``engine.json`` into ``folder``."""
    for segment, rows in zip(segments, deleted, strict=True):
        segment.write(folder / SEGMENTS_DIR / segment.id)
        if len(rows):
            (folder / TOMBSTONES_DIR).mkdir(exist_ok=True)
            save_array(folder / TOMBSTONES_DIR / f"{segment.id}.npy", np.asarray(rows, dtype=np.int32))
    (folder / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8")
