"""Segments: incremental builds, tombstones, merges, scores equal to a build from scratch,
and first-wave folders that still load."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from recsys.domain import Publication, Query
from recsys.errors import EngineLoadError, UnknownPublication
from recsys.testing import sample_publications
from recsys.testing.conformance import default_corpus
from recsys_engine_lexical import LexicalEngine
from recsys_engine_lexical.files import save_folder
from recsys_engine_lexical.index import LexicalIndex
from recsys_engine_lexical.merging import MergePolicy, SegmentSize
from recsys_engine_lexical.segment import build_segment, merge_segments
from recsys_engine_lexical.tokenizer import Tokenizer

DATA = Path(__file__).parent / "data"

#: Merges often, so that a few rounds of changes exercise both kinds of merge.
EAGER = MergePolicy(segments_per_tier=2, factor=4, floor=4, max_deleted_share=0.1)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _build(publications, tmp_path: Path, name: str, previous: Path | None = None, policy=None):
    engine = LexicalEngine(merge_policy=policy)
    engine.fit(publications, previous=previous)
    folder = tmp_path / name
    folder.mkdir()
    metadata = engine.save(folder)
    return engine, folder, metadata


def _queries(corpus: list[Publication], rng: random.Random) -> list[Query]:
    picks = rng.sample(corpus, 8)
    labels = sorted({p.label for p in corpus if p.label})
    queries = [Query(text=f"{p.title}. {p.abstract}", k=10) for p in picks[:4]]
    queries += [Query(text=picks[4].title, k=50), Query(text=" ".join(p.title for p in picks), k=100)]
    queries += [Query(publication_id=p.id, k=k) for p in picks[4:] for k in (3, 20)]
    queries.append(Query(publication_id=picks[0].id, k=10, label=labels[0]))
    return queries


def _same(expected, actual, where: str) -> None:
    """Identical ids, order and evidence sentences; scores within 1e-9 relative."""
    assert [r.publication_id for r in actual] == [r.publication_id for r in expected], where
    for want, got in zip(expected, actual, strict=True):
        assert math.isclose(got.score, want.score, rel_tol=1e-9, abs_tol=0), where
        assert [(e.query_sentence, e.sentence) for e in got.evidence] == [
            (e.query_sentence, e.sentence) for e in want.evidence
        ], where
        for e_want, e_got in zip(want.evidence, got.evidence, strict=True):
            assert math.isclose(e_got.score, e_want.score, rel_tol=1e-9, abs_tol=0), where


# -- equivalence with a build from scratch ---------------------------------------------


def test_rounds_of_upserts_replacements_and_deletes_score_like_a_build_from_scratch(tmp_path):
    rng = random.Random(7)
    everything = default_corpus()
    held = everything[-40:]
    corpus = everything[:-40]
    engine, folder, _ = _build(corpus, tmp_path, "r0", policy=EAGER)
    reasons: set[str] = set()
    gone: set[str] = set()
    added: list[Publication] = []
    for number in range(1, 11):
        # Given a change: 3 added, 2 replaced (another paper's abstract), 2 deleted (one of them
        # added in the round before, so that small segments fill with tombstones)
        donors = rng.sample(everything, 2)
        targets = rng.sample([p for p in corpus if p not in added], 3)
        replaced = {t.id: dataclasses.replace(t, abstract=d.abstract) for t, d in zip(targets[:2], donors, strict=True)}
        deleted = {targets[2].id, (added or rng.sample(corpus, 1))[0].id}
        added = [held.pop() for _ in range(3)]
        corpus = [replaced.get(p.id, p) for p in corpus if p.id not in deleted] + added
        gone = (gone | deleted) - {p.id for p in corpus}
        rng.shuffle(corpus)
        before = _hashes(folder)
        # When built incrementally on the last folder, and from scratch
        engine, new_folder, metadata = _build(corpus, tmp_path, f"r{number}", previous=folder, policy=EAGER)
        assert _hashes(folder) == before, "the build changed a file under previous"
        report = metadata.extra["segments"]
        assert report["incremental"] and (report["added"], report["replaced"], report["removed"]) == (3, 2, 2)
        reasons.update(m["reason"].split()[0] for m in report["merged"])
        scratch = LexicalEngine()
        scratch.fit(corpus)
        loaded = LexicalEngine.load(new_folder)
        # Then both rank, score and explain exactly alike
        assert loaded.publication_count == engine.publication_count == len(corpus) == metadata.publications
        assert loaded.index.terms == scratch.index.terms
        np.testing.assert_array_equal(loaded.index.idf, scratch.index.idf)
        for query in _queries(corpus, rng):
            expected = scratch.recommend(query)
            _same(expected, engine.recommend(query), f"round {number}, fitted, {query.to_dict()}")
            _same(expected, loaded.recommend(query), f"round {number}, loaded, {query.to_dict()}")
            assert not gone & {r.publication_id for r in expected}
        for publication_id in gone:
            with pytest.raises(UnknownPublication):
                loaded.recommend(Query(publication_id=publication_id))
        loaded.close()
        folder = new_folder
    assert reasons == {"tier", "over"}, f"the rounds should have merged for both reasons, merged for {reasons}"


def test_ties_go_to_the_smaller_id_however_the_segments_lie(tmp_path):
    twin = dict(title="Spectral lines of cold gas", abstract="Cold gas absorbs spectral lines of quasars.")
    others = [p for p in sample_publications()[:6]]
    base = [Publication(id="zeta", **twin), *others]
    _, folder, _ = _build(base, tmp_path, "a")
    engine, _, _ = _build([*base, Publication(id="alpha", **twin)], tmp_path, "b", previous=folder)
    assert len(engine.index.segments) == 2  # "alpha" is stored after "zeta"
    recs = engine.recommend(Query(text="spectral lines of cold gas", k=2))
    assert [r.publication_id for r in recs] == ["alpha", "zeta"] and recs[0].score == recs[1].score


# -- what an incremental build writes ----------------------------------------------------


def test_an_unchanged_corpus_writes_no_segment_and_links_every_file(tmp_path):
    pubs = sample_publications()
    _, first, _ = _build(pubs, tmp_path, "a")
    _, second, metadata = _build(list(reversed(pubs)), tmp_path, "b", previous=first)
    report = metadata.extra["segments"]
    assert report["written"] == [] and report["merged"] == [] and report["kept"] == ["s000001"]
    before, after = _hashes(first), _hashes(second)
    assert set(before) == set(after)
    assert {name for name in after if before[name] != after[name]} <= {"segments.json"}
    for name in after:
        if name.startswith("segments/"):
            assert (first / name).stat().st_ino == (second / name).stat().st_ino, f"{name} is not hard-linked"


def test_a_change_writes_a_small_segment_and_tombstones(tmp_path):
    pubs = sample_publications()
    _, first, _ = _build(pubs, tmp_path, "a")
    changed = [dataclasses.replace(pubs[0], abstract=pubs[9].abstract)] + pubs[1:18]
    engine, second, metadata = _build(changed, tmp_path, "b", previous=first)
    assert metadata.extra["segments"] == {
        "count": 2, "publications": 18, "tombstones": 3, "incremental": True, "added": 0, "replaced": 1,
        "removed": 2, "kept": ["s000001"], "written": ["s000002"], "merged": [],
    }
    assert np.load(second / "tombstones" / "s000001.npy").tolist() == [0, 18, 19]
    state = json.loads((second / "segments.json").read_text())
    assert state["segments"][1] == {"id": "s000002", "publications": 1, "sentences": 4, "deleted": 0}
    assert engine.index.row_of(pubs[0].id) == 20  # the new version, in the new segment
    assert engine.recommend(Query(text=pubs[9].abstract, k=2))[0].publication_id in {pubs[0].id, pubs[9].id}


def test_a_merged_segment_equals_a_fresh_segment_of_its_publications(tmp_path):
    tokenizer = Tokenizer()
    pubs = sample_publications()
    first, second = build_segment(1, pubs[:12], tokenizer), build_segment(2, pubs[12:], tokenizer)
    drop = np.ones(12, dtype=bool)
    drop[[2, 7]] = False
    merged = merge_segments(3, [(first, drop), (second, np.ones(8, dtype=bool))])
    fresh = build_segment(3, [p for i, p in enumerate(pubs[:12]) if drop[i]] + pubs[12:], tokenizer)
    for segment, name in ((merged, "merged"), (fresh, "fresh")):
        (tmp_path / name).mkdir()
        save_folder(tmp_path / name, tokenizer, [segment], {}, next_number=4, totals={}, build={})
    assert _hashes(tmp_path / "merged") == _hashes(tmp_path / "fresh")


def test_a_previous_built_with_other_tokenizer_settings_gives_a_full_build(tmp_path):
    pubs = sample_publications()
    unstemmed = LexicalEngine(stemming=False)
    unstemmed.fit(pubs)
    (tmp_path / "a").mkdir()
    unstemmed.save(tmp_path / "a")
    _, _, metadata = _build(pubs, tmp_path, "b", previous=tmp_path / "a")
    report = metadata.extra["segments"]
    assert not report["incremental"] and report["written"] == ["s000002"]  # ids continue, never reused


def test_a_previous_of_another_engine_gives_a_full_build(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "stub.json").write_text("{}")
    engine, _, metadata = _build(sample_publications(), tmp_path, "b", previous=tmp_path / "other")
    assert not metadata.extra["segments"]["incremental"] and engine.publication_count == 20


# -- the merge policy ----------------------------------------------------------------------


def test_tiers_follow_live_publications():
    policy = MergePolicy()
    assert [policy.tier(n) for n in (0, 9, 10, 99, 100, 2_000_000)] == [0, 0, 1, 1, 2, 6]


def test_a_full_tier_merges_its_smallest_segments():
    policy = MergePolicy(segments_per_tier=2, factor=10, floor=10)
    sizes = [SegmentSize("s1", 50), SegmentSize("s2", 9), SegmentSize("s3", 2), SegmentSize("s4", 3)]
    (merge,) = policy.plan(sizes)
    assert merge.sources == ("s3", "s4") and merge.reason == "tier 0 held 3 segments (at most 2)"


def test_a_merge_may_cascade_and_is_planned_once():
    policy = MergePolicy(segments_per_tier=2, factor=10, floor=10)
    sizes = [SegmentSize("s1", 50), SegmentSize("s2", 30), SegmentSize("s3", 8), SegmentSize("s4", 6),
             SegmentSize("s5", 5)]
    # s4 + s5 make 11 publications, in tier 1, which then holds 3: s2 and that merge join
    (merge,) = policy.plan(sizes)
    assert merge.sources == ("s2", "s4", "s5") and merge.reason.startswith("tier 1 held 3")
    assert policy.plan([SegmentSize("s1", 50), SegmentSize("s6", 41), SegmentSize("s3", 8)]) == []


def test_heavily_tombstoned_segments_are_rewritten_together():
    policy = MergePolicy(max_deleted_share=0.25)
    (merge,) = policy.plan([SegmentSize("s1", 100, 25), SegmentSize("s2", 100, 26), SegmentSize("s3", 10, 10)])
    assert merge.sources == ("s2", "s3") and merge.reason == "over 25% of publications tombstoned"


def test_segments_with_no_live_publication_are_dropped():
    (merge,) = MergePolicy().plan([SegmentSize("s1", 100, 1), SegmentSize("s2", 3, 3), SegmentSize("s3", 1, 1)])
    assert merge.sources == ("s2", "s3") and merge.reason.endswith("none left: dropped")


def test_the_policy_is_stable_on_its_own_result():
    policy = MergePolicy(segments_per_tier=3, factor=4, floor=2)
    sizes = [SegmentSize(f"s{i}", n, d) for i, (n, d) in enumerate([(40, 3), (9, 0), (3, 2), (2, 0), (1, 0), (1, 0)])]
    merges = policy.plan(sizes)
    merged = {s for m in merges for s in m.sources}
    rest = [s for s in sizes if s.id not in merged]
    rest += [SegmentSize(f"m{i}", sum(s.live for s in sizes if s.id in m.sources)) for i, m in enumerate(merges)]
    assert merges and policy.plan(rest) == []


# -- first-wave folders ----------------------------------------------------------------------


def test_a_first_wave_folder_loads_and_answers_as_it_did():
    with LexicalEngine.load(DATA / "first-wave") as engine:
        assert engine.publication_count == 12
        for case in json.loads((DATA / "first-wave-answers.json").read_text()):
            query = Query(**{k: v for k, v in case["query"].items()})
            got = [r.to_dict() for r in engine.recommend(query)]
            want = case["recommendations"]
            assert [r["publication_id"] for r in got] == [r["publication_id"] for r in want]
            assert [[e["sentence"] for e in r["evidence"]] for r in got] == [
                [e["sentence"] for e in r["evidence"]] for r in want
            ]
            for g, w in zip(got, want, strict=True):
                assert g["score"] == pytest.approx(w["score"], abs=1e-5)
        with pytest.raises(UnknownPublication):
            engine.recommend(Query(publication_id="astro-05"))


def test_a_loaded_first_wave_engine_saves_its_files_as_they_are(tmp_path):
    with LexicalEngine.load(DATA / "first-wave") as engine:
        metadata = engine.save(tmp_path)
    assert metadata.publications == 12
    assert _hashes(tmp_path) == _hashes(DATA / "first-wave")


def test_a_build_on_a_first_wave_previous_is_a_full_build(tmp_path):
    pubs = sample_publications()
    engine, folder, metadata = _build(pubs, tmp_path, "b", previous=DATA / "first-wave")
    assert not metadata.extra["segments"]["incremental"] and metadata.extra["segments"]["written"] == ["s000001"]
    assert (folder / "segments.json").exists() and engine.publication_count == 20


# -- damaged folders -----------------------------------------------------------------------


@pytest.fixture
def changed_folder(tmp_path):
    pubs = sample_publications()
    _, first, _ = _build(pubs, tmp_path, "a")
    _, second, _ = _build(pubs[:19], tmp_path, "b", previous=first)
    return second


def test_load_refuses_a_tombstone_outside_its_segment(changed_folder):
    np.save(changed_folder / "tombstones" / "s000001.npy", np.array([20], dtype=np.int32))
    with pytest.raises(EngineLoadError, match="ascending rows below 20"):
        LexicalEngine.load(changed_folder)


def test_load_refuses_a_segment_id_that_is_not_a_name(changed_folder):
    state = json.loads((changed_folder / "segments.json").read_text())
    state["segments"][0]["id"] = "../s000001"
    (changed_folder / "segments.json").write_text(json.dumps(state))
    with pytest.raises(EngineLoadError, match="not an id like"):
        LexicalEngine.load(changed_folder)


def test_load_names_a_missing_segment(changed_folder):
    for path in (changed_folder / "segments" / "s000001").iterdir():
        path.unlink()
    with pytest.raises(EngineLoadError, match=r"s000001/segment\.json is missing"):
        LexicalEngine.load(changed_folder)


def test_an_index_of_no_live_publication_scores_nothing():
    segment = build_segment(1, sample_publications()[:2], Tokenizer())
    index = LexicalIndex(Tokenizer(), [segment], {"s000001": np.array([0, 1])})
    assert index.publication_total == 0 and index.terms == [] and index.row_of("astro-01") is None
    assert not index.scores(index.vectorize([["galaxy"]])).any()
