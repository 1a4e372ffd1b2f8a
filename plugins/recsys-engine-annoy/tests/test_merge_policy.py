"""The tiered merge policy (recsys_engine_annoy/merge.py, docs/engine-annoy.md *Segments*)."""

from __future__ import annotations

from recsys_engine_annoy.merge import MergePolicy, SegmentSize

POLICY = MergePolicy()


def sizes(*live: int) -> list[SegmentSize]:
    return [SegmentSize(n, 0) for n in live]


def test_tiers_grow_tenfold_from_the_floor():
    assert [POLICY.tier(n) for n in (1, 999, 1_000, 9_999, 10_000, 99_999, 100_000, 2_000_000)] == [
        0, 0, 0, 0, 1, 1, 2, 3]


def test_a_tier_merges_only_when_it_holds_more_than_ten():
    assert POLICY.plan(sizes(36_949, *[369] * 10)) == ([], [])
    merges, dropped = POLICY.plan(sizes(36_949, *[369] * 11))
    assert merges == [list(range(1, 12))] and dropped == []


def test_a_merge_that_fills_the_next_tier_cascades_at_once():
    # ten tier-1 segments and eleven tier-0 ones adding up to a tier-1 segment
    merges, _ = POLICY.plan(sizes(*[20_000] * 10, *[1_000] * 11))
    assert merges == [list(range(21))]


def test_a_segment_more_than_a_quarter_tombstoned_is_rewritten_alone():
    merges, dropped = POLICY.plan([SegmentSize(1_000, 250), SegmentSize(1_000, 251), SegmentSize(50, 0)])
    assert merges == [[1]] and dropped == []


def test_a_segment_with_nothing_live_is_dropped():
    merges, dropped = POLICY.plan([SegmentSize(100, 100), SegmentSize(5_000, 10)])
    assert merges == [] and dropped == [0]


def test_the_policy_is_recorded():
    assert POLICY.to_dict() == {"kind": "tiered", "floor": 1_000, "factor": 10, "segments_per_tier": 10,
                                "max_deleted_share": 0.25}
