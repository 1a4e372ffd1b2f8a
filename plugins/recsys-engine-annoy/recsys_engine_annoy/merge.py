"""The tiered merge policy: when segments are merged, and when one is rewritten.

Like Lucene's TieredMergePolicy, simplified:

* a segment's **tier** is set by its live publications (stored minus tombstoned): tier 0
  below ``floor * factor`` (10,000), tier 1 below 100,000, and so on (``factor`` 10;
  segments smaller than ``floor`` count as ``floor``);
* when a tier holds more than ``segments_per_tier`` (10) segments, they are all merged into
  one, which may land in the next tier and make it merge in turn (the cascade is planned
  at once: each publication is written once per build, however far it climbs);
* a segment whose tombstoned share exceeds ``max_deleted_share`` (25%) is rewritten
  without its tombstoned publications; one whose publications are all tombstoned is dropped.

So segments stay few (at most ``segments_per_tier`` per tier, and tiers grow tenfold), a
publication is rewritten about once per tier it climbs, and at most a quarter of a
segment is dead weight. A merge copies stored texts and vectors (float16 sentence vectors,
float32 publication means): nothing is encoded again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MergePolicy", "SegmentSize"]


@dataclass(frozen=True)
class SegmentSize:
    """What the policy knows of a segment: its stored and tombstoned publications."""

    publications: int
    deleted: int

    @property
    def live(self) -> int:
        return self.publications - self.deleted


@dataclass
class _Group:
    members: list[int] = field(default_factory=list)
    live: int = 0
    rewrite: bool = False


@dataclass(frozen=True)
class MergePolicy:
    """The tiered policy's parameters (recorded in ``engine.json``)."""

    floor: int = 1_000
    factor: int = 10
    segments_per_tier: int = 10
    max_deleted_share: float = 0.25

    def tier(self, live: int) -> int:
        """0 for fewer than ``floor * factor`` live publications, 1 for ``factor`` times more, ..."""
        return int(math.floor(math.log(max(live, self.floor) / self.floor, self.factor) + 1e-9))

    def plan(self, sizes: Sequence[SegmentSize]) -> tuple[list[list[int]], list[int]]:
        """``(merges, dropped)``: groups of segment positions (in order) each written as one
        new segment (a group of one is a rewrite without its tombstones), and the positions
        of segments dropped because nothing in them is live."""
        dropped = [i for i, size in enumerate(sizes) if size.live <= 0]
        groups = [
            _Group([i], size.live, rewrite=size.deleted > self.max_deleted_share * size.publications)
            for i, size in enumerate(sizes) if size.live > 0
        ]
        while True:
            tiers: dict[int, list[_Group]] = {}
            for group in groups:
                tiers.setdefault(self.tier(group.live), []).append(group)
            crowded = sorted(t for t, members in tiers.items() if len(members) > self.segments_per_tier)
            if not crowded:
                break
            merged = tiers[crowded[0]]
            union = _Group(sorted(i for g in merged for i in g.members), sum(g.live for g in merged), rewrite=True)
            groups = [g for g in groups if all(g is not m for m in merged)] + [union]
            groups.sort(key=lambda g: g.members[0])
        merges = [g.members for g in groups if g.rewrite]
        return merges, dropped

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tiered", "floor": self.floor, "factor": self.factor,
                "segments_per_tier": self.segments_per_tier, "max_deleted_share": self.max_deleted_share}
