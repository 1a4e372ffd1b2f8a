"""The tiered merge policy: which segments an incremental build rewrites.

A simplified form of Lucene's TieredMergePolicy, applied after every build to the
segments kept from ``previous`` plus the build's new segment:

1. **Tombstones.** Every segment whose tombstoned share of publications exceeds
   ``max_deleted_share`` (25%) is rewritten without them; all such segments of one
   build become one new segment (a segment left with no live publication is dropped).
2. **Tiers.** A segment's tier follows its live publications: tier 0 below
   ``floor`` (10), tier 1 below ``floor × factor`` (100), tier 2 below 1,000,
   and so on. While a tier holds more than ``segments_per_tier`` (10) segments, the
   ``segments_per_tier`` smallest segments of the lowest such tier (ties: the older
   first) are merged into one, which may land in the next tier and make that one
   overflow in turn (a merge that is itself merged again is planned once, from the
   original segments).

The result satisfies the policy, so a build over an unchanged corpus merges nothing.
Merging never tokenizes again: rows are copied from the stored segments
(:func:`recsys_engine_lexical.segment.merge_segments`). At most about
``segments_per_tier`` segments per tier stay live, so a query visits a few dozen
segments at most, and a publication is rewritten about once per tier it climbs
(log-structured: a change of ``c`` publications is written once, then again in a merge
of about ``10 c``, then ``100 c``, ...; most builds merge nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Merge", "MergePolicy", "SegmentSize"]


@dataclass(frozen=True)
class SegmentSize:
    """What the policy looks at: a segment's id, its publications and how many are tombstoned."""

    id: str
    publications: int
    deleted: int = 0

    @property
    def live(self) -> int:
        return self.publications - self.deleted


@dataclass(frozen=True)
class Merge:
    """Segments ``sources`` (in order) rewritten into one; ``reason`` says why."""

    sources: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class _Item:
    sources: tuple[str, ...]
    live: int
    deleted: int
    reason: str | None  # None: a segment as it is, not (yet) merged


@dataclass(frozen=True)
class MergePolicy:
    """The parameters of the tiered policy (see the module docstring)."""

    segments_per_tier: int = 10
    factor: int = 10
    floor: int = 10
    max_deleted_share: float = 0.25

    def __post_init__(self) -> None:
        if self.segments_per_tier < 1 or self.factor < 2 or self.floor < 1:
            raise ValueError("segments_per_tier must be >= 1, factor >= 2 and floor >= 1")
        if not 0.0 <= self.max_deleted_share < 1.0:
            raise ValueError("max_deleted_share must be in [0, 1)")

    def tier(self, live: int) -> int:
        """The tier of a segment with ``live`` publications."""
        tier, bound = 0, self.floor
        while live >= bound:
            tier, bound = tier + 1, bound * self.factor
        return tier

    def plan(self, segments: Sequence[SegmentSize]) -> list[Merge]:
        """The merges to apply to ``segments`` (oldest first), each from original segment ids
        (disjoint); the merged segments go after the segments that stay, in the order of the
        list. A merge whose sources hold no live publication drops them."""
        items = [_Item((s.id,), s.live, s.deleted, None) for s in segments]
        merges: list[Merge] = []
        heavy = [i for i in items if i.deleted and i.deleted > self.max_deleted_share * (i.live + i.deleted)]
        if heavy:
            items = [i for i in items if i not in heavy]
            share = f"over {self.max_deleted_share:.0%} of publications tombstoned"
            rewritten = _Item(sum((i.sources for i in heavy), ()), sum(i.live for i in heavy), 0, share)
            if rewritten.live:
                items.append(rewritten)
            else:  # nothing left to keep: the segments are dropped
                merges.append(Merge(rewritten.sources, share + ", none left: dropped"))
        rank = {s.id: position for position, s in enumerate(segments)}
        while True:
            tiers: dict[int, list[_Item]] = {}
            for item in items:
                tiers.setdefault(self.tier(item.live), []).append(item)
            full = sorted(t for t, members in tiers.items() if len(members) > self.segments_per_tier)
            if not full:
                break
            members = tiers[full[0]]
            # The smallest segments_per_tier of the tier (ties: the older first), as Lucene's merge factor.
            chosen = sorted(members, key=lambda i: (i.live, rank[i.sources[0]]))[: self.segments_per_tier]
            reason = f"tier {full[0]} held {len(members)} segments (at most {self.segments_per_tier})"
            sources = tuple(sorted((s for i in chosen for s in i.sources), key=rank.__getitem__))
            items = [i for i in items if i not in chosen]
            items.append(_Item(sources, sum(i.live for i in chosen), 0, reason))
        return merges + [Merge(i.sources, i.reason) for i in items if i.reason is not None]
