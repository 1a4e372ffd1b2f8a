"""Incremental builds: the segments of ``previous`` kept, a new segment for what changed.

The diff goes by publication id and content fingerprint (sha256 of a canonical JSON of
the fields the engine indexes or stores, :func:`recsys_engine_lexical.segment.fingerprint`):

* unchanged (same id, same fingerprint): kept in its segment, whose files stay as they are;
* changed (same id, new content): tombstoned in its old segment, written to the new one;
* new: written to the new segment;
* gone (in ``previous``, not in the corpus): tombstoned.

An unchanged corpus makes no new segment. Then the merge policy
(:mod:`recsys_engine_lexical.merging`) may rewrite some segments. What happened is
reported in ``EngineMetadata.extra["segments"]`` and in the build log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.domain import Publication
from recsys.engine import NULL_PROGRESS, Progress
from recsys_engine_lexical.files import Folder
from recsys_engine_lexical.merging import MergePolicy, SegmentSize
from recsys_engine_lexical.segment import (
    BoolArray,
    IntArray,
    Segment,
    build_segment,
    fingerprint,
    merge_segments,
)
from recsys_engine_lexical.tokenizer import Tokenizer

__all__ = ["Build", "build_segments"]


@dataclass
class Build:
    """The live segments (oldest first), their tombstoned rows, the next segment number
    and the report for ``extra["segments"]``."""

    segments: list[Segment]
    deleted: dict[str, IntArray]
    next_number: int
    report: dict[str, Any] = field(default_factory=dict)


def build_segments(
    publications: Sequence[Publication],
    tokenizer: Tokenizer,
    policy: MergePolicy,
    prior: Folder | None,
    *,
    next_number: int = 1,
    progress: Progress = NULL_PROGRESS,
) -> Build:
    """Segments for ``publications`` (ids unique): incremental over ``prior`` (a segmented
    folder with the same tokenizer), or one new segment when ``prior`` is None."""
    if prior is not None:
        progress("diff", 0, len(publications))
    segments = list(prior.segments) if prior is not None else []
    deleted: dict[str, set[int]] = {s.id: set() for s in segments}
    if prior is not None:
        next_number = prior.next_number
        for segment_id, rows in prior.deleted.items():
            deleted[segment_id].update(int(r) for r in rows)
    live: dict[str, tuple[str, int, bytes]] = {}
    for segment in segments:
        for row in range(len(segment)):
            if row not in deleted[segment.id]:
                live[segment.publications[row].id] = (segment.id, row, segment.fingerprints[row].tobytes())
    fresh: list[Publication] = []
    replaced = 0
    for pub in publications:
        where = live.pop(pub.id, None)
        if where is not None and where[2] == fingerprint(pub):
            continue
        if where is not None:
            deleted[where[0]].add(where[1])
            replaced += 1
        fresh.append(pub)
    for segment_id, row, _ in live.values():
        deleted[segment_id].add(row)
    if prior is not None:
        progress("diff", len(publications), len(publications))
    kept = [s.id for s in segments]
    if fresh:
        segments.append(build_segment(next_number, fresh, tokenizer, progress))
        deleted[segments[-1].id] = set()
        next_number += 1
    merged = []
    plan = policy.plan([SegmentSize(s.id, len(s), len(deleted[s.id])) for s in segments])
    for merge in plan:
        by_id = {s.id: s for s in segments}
        parts = [(by_id[i], _live_mask(by_id[i], deleted[i])) for i in merge.sources]
        segments = [s for s in segments if s.id not in merge.sources]
        entry: dict[str, Any] = {"from": list(merge.sources), "reason": merge.reason}
        if any(mask.any() for _, mask in parts):
            segments.append(merge_segments(next_number, parts))
            deleted[segments[-1].id] = set()
            entry["into"] = segments[-1].id
            next_number += 1
        merged.append(entry)
    tombstones: dict[str, IntArray] = {
        s.id: np.asarray(sorted(deleted[s.id]), dtype=np.int64) for s in segments if deleted[s.id]
    }
    report = {
        "count": len(segments),
        "publications": sum(len(s) for s in segments) - sum(len(r) for r in tombstones.values()),
        "tombstones": sum(len(r) for r in tombstones.values()),
        "incremental": prior is not None,
        "added": len(fresh) - replaced,
        "replaced": replaced,
        "removed": len(live),
        "kept": [i for i in kept if any(s.id == i for s in segments)],
        "written": [s.id for s in segments if s.folder is None],
        "merged": merged,
    }
    return Build(segments, tombstones, next_number, report)


def _live_mask(segment: Segment, deleted: set[int]) -> BoolArray:
    mask = np.ones(len(segment), dtype=bool)
    mask[np.asarray(sorted(deleted), dtype=np.int64)] = False
    return mask
