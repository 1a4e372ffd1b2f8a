"""Incremental builds: what changed since the previous engine, and the segments that result.

``fit(publications, previous=folder)`` keeps the previous engine's segments when that
engine is *compatible* (format 2, same model hash, backend, vector dimension and type,
same ``RECSYS_ANNOY_TREES`` / ``RECSYS_ANNOY_SEARCH_K``; otherwise it is a full build that
still reuses the vectors it can, :mod:`recsys_engine_annoy.vectors`). The diff is by
publication id and :func:`~recsys_engine_annoy.corpus.fingerprint`:

* unchanged (same id, same fingerprint): stays in its segment, files untouched;
* changed (same id, new fingerprint): tombstone in its old segment, new version in the new segment;
* new id: the new segment; an id gone from the corpus: tombstone.

The new segment (if anything is new or changed) encodes only sentences that no previous
segment holds. Then the merge policy (:mod:`recsys_engine_annoy.merge`) says which
segments to merge or rewrite; merges copy stored vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recsys.domain import Publication
from recsys.errors import EngineLoadError
from recsys_engine_annoy import layout, storage
from recsys_engine_annoy.merge import MergePolicy, SegmentSize
from recsys_engine_annoy.segments import IndexRule, Segment, merge_segments

__all__ = ["Base", "Delta", "Outcome", "apply_policy", "open_base", "plan_delta"]

logger = logging.getLogger(__name__)


@dataclass
class Base:
    """A previous engine an incremental build keeps segments of (memory-mapped, read-only)."""

    info: layout.EngineInfo
    segments: list[Segment]
    deleted: list[NDArray[np.int64]]

    def close(self) -> None:
        for segment in self.segments:
            segment.close()


def next_number(previous: Path | None) -> int:
    """The first segment number this build may use: on from the previous engine's."""
    if previous is None:
        return 1
    try:
        return max(1, layout.read_info(previous).next_segment)
    except EngineLoadError:
        return 1


def open_base(previous: Path, *, model_sha256: str, backend: str, dimension: int, rule: IndexRule) -> Base | None:
    """The previous engine's segments when an incremental build may keep them; None (and a
    log line saying why) when the build must start from scratch."""
    try:
        info = layout.read_info(previous)
    except EngineLoadError as exc:
        logger.info("full build: the previous engine in %s is unreadable (%s)", previous, exc)
        return None
    why = None
    if info.format != layout.FORMAT:
        why = f"it is a format-{info.format} (first-wave) engine"
    elif info.model_sha256 != model_sha256 or info.backend != backend:
        why = f"it was made with model {info.model_sha256[:12]} / backend {info.backend}"
    elif info.dimension != dimension or info.vector_dtype != storage.VECTOR_DTYPE:
        why = f"its vectors are {info.vector_dtype} of dimension {info.dimension}"
    elif (info.trees, info.search_k) != (rule.trees, rule.search_k):
        why = f"it was built with trees={info.trees}, search_k={info.search_k}"
    if why is not None:
        logger.info("full build: the previous engine in %s cannot be extended (%s)", previous, why)
        return None
    try:
        segments, deleted = layout.read_engine(previous, info)
    except EngineLoadError as exc:
        logger.warning("full build: the previous engine in %s is damaged (%s)", previous, exc)
        return None
    return Base(info, segments, deleted)


@dataclass
class Delta:
    """What an incremental build does to the previous segments, and what it adds."""

    #: Per previous segment: every tombstoned row after this build (sorted).
    deleted: list[NDArray[np.int64]]
    #: Positions (in the corpus) of the publications written into the new segment.
    batch: list[int]
    unchanged: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0


def plan_delta(publications: Sequence[Publication], prints: Sequence[bytes], base: Base | None) -> Delta:
    """Diff the corpus against ``base`` by id and fingerprint."""
    if base is None:
        return Delta([], list(range(len(publications))), added=len(publications))
    live: dict[str, tuple[int, int]] = {}
    for number, (segment, deleted) in enumerate(zip(base.segments, base.deleted, strict=True)):
        gone = set(deleted.tolist())
        for row, pid in enumerate(segment.records.ids):
            if row not in gone:
                live[pid] = (number, row)
    kept: set[tuple[int, int]] = set()
    delta = Delta([], [])
    for position, pub in enumerate(publications):
        where = live.get(pub.id)
        if where is not None:
            stored = base.segments[where[0]].fingerprints
            if stored is not None and stored[where[1]].tobytes() == prints[position]:
                kept.add(where)
                delta.unchanged += 1
                continue
            delta.changed += 1
        else:
            delta.added += 1
        delta.batch.append(position)
    delta.removed = len(live) - delta.unchanged - delta.changed
    tombstoned: list[list[int]] = [[] for _ in base.segments]
    for where in live.values():
        if where not in kept:
            tombstoned[where[0]].append(where[1])
    delta.deleted = [np.union1d(old, np.array(new, dtype=np.int64)).astype(np.int64)
                     for old, new in zip(base.deleted, tombstoned, strict=True)]
    return delta


@dataclass
class Outcome:
    """The segments of the new engine, in order, and what the merge policy did."""

    segments: list[Segment]
    deleted: list[NDArray[np.int64]]
    merged: list[list[str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    next_number: int = 1


def apply_policy(segments: list[Segment], deleted: list[NDArray[np.int64]], *, policy: MergePolicy,
                 rule: IndexRule, next_number: int, fresh: set[str]) -> Outcome:
    """Merge, rewrite or drop segments as ``policy`` says; ``fresh``: ids of the segments
    this build made (written unless merged away)."""
    merges, dropped = policy.plan([SegmentSize(len(s), len(d)) for s, d in zip(segments, deleted, strict=True)])
    outcome = Outcome([], [], dropped=[segments[i].id for i in dropped])
    replaced: dict[int, Segment] = {}
    consumed: set[int] = set(dropped)
    for group in merges:
        segment_id = layout.segment_name(next_number)
        next_number += 1
        replaced[group[0]] = merge_segments(segment_id, [(segments[i], deleted[i]) for i in group], rule)
        consumed.update(group)
        outcome.merged.append([segments[i].id for i in group])
        logger.info("merged segments %s into %s (%d publications)", ", ".join(segments[i].id for i in group),
                    segment_id, len(replaced[group[0]]))
    for position, segment in enumerate(segments):
        if position in replaced:
            outcome.segments.append(replaced[position])
            outcome.deleted.append(np.empty(0, dtype=np.int64))
            outcome.written.append(replaced[position].id)
        elif position not in consumed:
            outcome.segments.append(segment)
            outcome.deleted.append(deleted[position])
            if segment.id in fresh:
                outcome.written.append(segment.id)
    for position in sorted(consumed):
        if all(segments[position] is not s for s in outcome.segments):
            segments[position].close()
    outcome.next_number = next_number
    return outcome
