"""Segments: incremental builds keep unchanged files, tombstone what went, and answer like a
build from scratch (docs/engine-annoy.md, *Segments*).

These tests use a deterministic stand-in for the model (``fake_encoder``): the same text
always gets the same vector, so a build from scratch and an incremental one can be
compared exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from recsys.config import Settings
from recsys.domain import Publication, Query
from recsys.errors import EngineLoadError, UnknownPublication
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.corpus import publication_sentences
from recsys_engine_annoy.settings import SETTINGS

SEGMENT_FILES = {
    "segment.json", "publications.jsonl", "fingerprints.npy", "sentences.txt", "sentence_offsets.npy",
    "sentence_starts.npy", "sentence_vectors.npy", "publication_vectors.npy",
    # the lexical half of the hybrid score (recsys_engine_annoy.lexical)
    "lexical.vocabulary.json", "lexical.document_frequency.npy", "lexical.publication_tf.data.npy",
    "lexical.publication_tf.indices.npy", "lexical.publication_tf.indptr.npy",
}


def build(settings: Settings, corpus: list[Publication], folder: Path, previous: Path | None = None) -> AnnoyEngine:
    engine = AnnoyEngine(settings)
    engine.fit(corpus, previous=previous)
    folder.mkdir(parents=True)
    engine.save(folder)
    return engine


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) with the sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def answers(engine: AnnoyEngine, queries: list[Query]) -> list[list[tuple[str, float, tuple[str, ...]]]]:
    return [[(r.publication_id, r.score, tuple(e.sentence for e in r.evidence)) for r in engine.recommend(q)]
            for q in queries]


def assert_same_answers(got: AnnoyEngine, expected: AnnoyEngine, queries: list[Query]) -> None:
    for query, mine, theirs in zip(queries, answers(got, queries), answers(expected, queries), strict=True):
        assert [r[0] for r in mine] == [r[0] for r in theirs], query
        assert np.allclose([r[1] for r in mine], [r[1] for r in theirs], atol=1e-6), query
        assert [r[2] for r in mine] == [r[2] for r in theirs], query


def probe_queries(corpus: list[Publication]) -> list[Query]:
    labels = sorted({p.label for p in corpus if p.label})
    return [
        *[Query(publication_id=p.id, k=10) for p in corpus[::7]],
        Query(text="Robots that learn to walk on sand. Neural networks for vision.", k=10),
        Query(text=corpus[3].title, k=5),
        Query(text=corpus[11].abstract, k=20, label=labels[0]),
        Query(publication_id=corpus[2].id, k=8, year_min=2018, exclude_ids=frozenset({corpus[5].id})),
    ]


def edited(corpus: list[Publication]) -> list[Publication]:
    """The corpus with one publication changed, one removed and two added."""
    changed = dataclasses.replace(corpus[4], abstract="An entirely new abstract on tidal power. It has two parts.")
    added = [
        Publication(id="new-1", title="Swarms of drones map forests", abstract="Drones fly in swarms over forests.",
                    label=corpus[0].label, year=2024),
        Publication(id="new-2", title="Tidal power plants", abstract=corpus[9].abstract, label=corpus[9].label),
    ]
    return [*corpus[:4], changed, *corpus[5:20], *corpus[21:], *added]


@pytest.fixture
def first(settings, small_corpus, fake_encoder, tmp_path) -> Path:
    engine = build(settings, small_corpus, tmp_path / "first")
    engine.close()
    return tmp_path / "first"


def test_a_full_build_is_one_segment_without_unused_index_files(first, small_corpus):
    assert {p.name for p in first.iterdir()} == {"engine.json", "segments"}
    assert [p.name for p in (first / "segments").iterdir()] == ["s000001"]
    assert {p.name for p in (first / "segments" / "s000001").iterdir()} == SEGMENT_FILES  # no .ann: scanned exactly
    info = json.loads((first / "engine.json").read_text())
    assert info["format"] == 2 and info["publications"] == len(small_corpus)
    assert info["segments"] == [{"id": "s000001", "publications": len(small_corpus),
                                 "sentences": info["sentences"], "deleted": 0}]


def test_an_unchanged_corpus_writes_no_segment(settings, small_corpus, first, fake_encoder, tmp_path):
    fake_encoder.encoded.clear()
    engine = build(settings, small_corpus, tmp_path / "again", previous=first)
    assert fake_encoder.encoded == []
    before, after = files(first), files(tmp_path / "again")
    assert {k: v for k, v in after.items() if k != "engine.json"} == {k: v for k, v in before.items()
                                                                       if k != "engine.json"}
    assert engine.build_stats["unchanged"] == len(small_corpus) and engine.build_stats["written_segments"] == 0


def test_an_incremental_build_keeps_segments_and_tombstones_what_went(settings, small_corpus, first, fake_encoder,
                                                                      tmp_path):
    corpus = edited(small_corpus)
    before = files(first)
    fake_encoder.encoded.clear()
    engine = build(settings, corpus, tmp_path / "next", previous=first)
    after = files(tmp_path / "next")
    # the previous engine is untouched, its segment kept byte for byte
    assert files(first) == before
    assert {k: v for k, v in after.items() if k.startswith("segments/s000001/")} == {
        k: v for k, v in before.items() if k.startswith("segments/s000001/")}
    # the changed and new publications are a new segment; only their new sentences were encoded
    old_sentences = {s for p in small_corpus for s in publication_sentences(p)}
    new_sentences = {s for p in corpus[-3:] + [corpus[4]] for s in publication_sentences(p)} - old_sentences
    assert sorted(set(fake_encoder.encoded)) == sorted(new_sentences)
    assert sorted(k for k in after if not k.startswith("segments/s000001/")) == [
        "engine.json", *[f"segments/s000002/{n}" for n in sorted(SEGMENT_FILES)], "tombstones/s000001.npy"]
    report = engine.segment_report()
    assert report["ids"] == ["s000001", "s000002"] and report["publications"][1] == 3
    assert report["tombstones"] == 2 and report["written"] == ["s000002"] and report["merged"] == []
    stats = engine.build_stats
    assert (stats["unchanged"], stats["changed"], stats["added"], stats["removed"]) == (len(corpus) - 3, 1, 2, 1)
    # tombstoned publications are gone: never returned, never queried, never counted
    loaded = AnnoyEngine.load(tmp_path / "next", settings)
    assert loaded.publication_count == len(corpus)
    with pytest.raises(UnknownPublication):
        loaded.recommend(Query(publication_id=small_corpus[20].id, k=3))
    everything = [r.publication_id for r in loaded.recommend(Query(text="robots and genes", k=len(corpus)))]
    assert sorted(everything) == sorted(p.id for p in corpus)
    assert loaded.recommend(Query(publication_id=corpus[4].id, k=1))  # the changed one, by id: its new version
    assert loaded.query_vectors(Query(publication_id=corpus[4].id, k=1)).sentences[1].startswith("An entirely new")
    loaded.close()


def test_search_over_segments_equals_a_build_from_scratch(settings, small_corpus, first, fake_encoder, tmp_path):
    corpus = edited(small_corpus)
    incremental = build(settings, corpus, tmp_path / "next", previous=first)
    scratch = build(settings, corpus, tmp_path / "scratch")
    queries = probe_queries(corpus)
    assert_same_answers(incremental, scratch, queries)
    loaded = AnnoyEngine.load(tmp_path / "next", settings)
    assert_same_answers(loaded, scratch, queries)
    loaded.close()


def test_merges_reuse_stored_vectors_and_answer_like_scratch(settings, small_corpus, fake_encoder, tmp_path,
                                                            monkeypatch):
    # Given a small merge policy (3 segments per tier) and a corpus that grows in four steps
    from recsys_engine_annoy.merge import MergePolicy

    monkeypatch.setattr(AnnoyEngine, "merge_policy", MergePolicy(floor=1_000, segments_per_tier=3))
    steps = [small_corpus[:40], small_corpus[:55], small_corpus[:70], small_corpus[:85]]
    previous = None
    for number, corpus in enumerate(steps):
        fake_encoder.encoded.clear()
        engine = build(settings, corpus, tmp_path / f"step{number}", previous=previous)
        new = {s for p in corpus[len(steps[number - 1]) if number else 0:] for s in publication_sentences(p)}
        assert set(fake_encoder.encoded) <= new  # a merge never encodes
        previous = tmp_path / f"step{number}"
    # Then the fourth segment made the tier overflow: all four merged into a new one
    report = engine.segment_report()
    assert report["merged"] == [["s000001", "s000002", "s000003", "s000004"]]
    assert report["ids"] == ["s000005"] and report["written"] == ["s000005"]
    assert sorted(p.name for p in (previous / "segments").iterdir()) == ["s000005"]
    scratch = build(settings, steps[-1], tmp_path / "scratch")
    assert_same_answers(engine, scratch, probe_queries(steps[-1]))
    merged = AnnoyEngine.load(previous, settings)
    assert_same_answers(merged, scratch, probe_queries(steps[-1]))
    assert np.array_equal(merged.data.segments[0].sentence_vectors, scratch.data.segments[0].sentence_vectors)
    merged.close()


def test_a_segment_mostly_tombstoned_is_rewritten(settings, small_corpus, first, fake_encoder, tmp_path):
    corpus = small_corpus[30:]  # 30 of 96 gone: more than a quarter
    fake_encoder.encoded.clear()
    engine = build(settings, corpus, tmp_path / "next", previous=first)
    assert fake_encoder.encoded == []
    report = engine.segment_report()
    assert report["merged"] == [["s000001"]] and report["ids"] == ["s000002"] and report["tombstones"] == 0
    assert not (tmp_path / "next" / "tombstones").exists()
    assert_same_answers(engine, build(settings, corpus, tmp_path / "scratch"), probe_queries(corpus))


def test_a_segment_wholly_removed_is_dropped(settings, small_corpus, fake_encoder, tmp_path):
    build(settings, small_corpus[:50], tmp_path / "a")
    build(settings, small_corpus, tmp_path / "b", previous=tmp_path / "a")
    engine = build(settings, small_corpus[50:], tmp_path / "c", previous=tmp_path / "b")
    report = engine.segment_report()
    assert report["dropped"] == ["s000001"] and report["ids"] == ["s000002"]
    assert engine.publication_count == len(small_corpus) - 50


def test_changed_settings_mean_a_full_build_that_reuses_vectors(settings, small_corpus, first, fake_encoder,
                                                                tmp_path):
    fake_encoder.encoded.clear()
    engine = build(settings.with_plugin(SETTINGS, trees=7), small_corpus, tmp_path / "next", previous=first)
    assert fake_encoder.encoded == [] and engine.build_stats["reused"] > 0
    assert engine.segment_report()["ids"] == ["s000002"]  # a new id, never one of the previous engine's


def test_large_segments_get_annoy_files_with_the_same_recall(settings, small_corpus, fake_encoder, tmp_path,
                                                              monkeypatch):
    # Given segments searched by Annoy from 60 publications up (the real size is 50,000)
    from recsys_engine_annoy import ann

    monkeypatch.setattr(ann, "PUBLICATIONS_EXACT_BELOW", 60)
    corpus = small_corpus[5:]  # five of the Annoy segment's publications removed: tombstones
    build(settings, small_corpus[:70], tmp_path / "a")
    incremental = build(settings, corpus, tmp_path / "b", previous=tmp_path / "a")
    names = {p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*.ann")}
    assert names == {"segments/s000001/publications.ann", "segments/s000001/sentences.ann"}  # the small one: none
    assert incremental.segment_report()["tombstones"] == 5
    scratch = build(settings, corpus, tmp_path / "scratch")
    assert {p.name for p in (tmp_path / "scratch" / "segments" / "s000001").glob("*.ann")} == {
        "publications.ann", "sentences.ann"}
    queries = probe_queries(corpus)
    gone = {p.id for p in small_corpus[:5]}
    assert not any(r[0] in gone for answer in answers(incremental, queries) for r in answer)
    monkeypatch.setattr(ann, "PUBLICATIONS_EXACT_BELOW", 50_000)
    exact = build(settings, corpus, tmp_path / "exact")
    assert recall(incremental, exact, queries) >= 0.95 and recall(scratch, exact, queries) >= 0.95


def recall(engine: AnnoyEngine, exact: AnnoyEngine, queries: list[Query]) -> float:
    found = total = 0
    for query in queries:
        truth = {r.publication_id for r in exact.recommend(query)}
        found += len(truth & {r.publication_id for r in engine.recommend(query)})
        total += len(truth)
    return found / total


def test_damaged_tombstones_are_refused(settings, small_corpus, first, fake_encoder, tmp_path):
    build(settings, small_corpus[1:], tmp_path / "next", previous=first)
    np.save(tmp_path / "next" / "tombstones" / "s000001.npy", np.array([5, 3], dtype=np.int32))
    with pytest.raises(EngineLoadError, match="tombstones of segment s000001"):
        AnnoyEngine.load(tmp_path / "next", settings)


def test_a_missing_segment_is_refused(settings, first):
    (first / "segments" / "s000001" / "segment.json").unlink()
    with pytest.raises(EngineLoadError, match="segment s000001 is missing"):
        AnnoyEngine.load(first, settings)


def test_metadata_reports_segments(settings, small_corpus, first, fake_encoder, tmp_path):
    engine = AnnoyEngine(settings)
    engine.fit(small_corpus[2:], previous=first)
    (tmp_path / "out").mkdir()
    extra = engine.save(tmp_path / "out").extra
    assert extra["segments"]["count"] == 1 and extra["segments"]["tombstones"] == 2
    assert extra["segments"]["written"] == [] and extra["format"] == 2
    json.dumps(extra)
