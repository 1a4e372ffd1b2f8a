"""What the lexical engine promises beyond the conformance suite: cosine scores,
evidence, its files, memory-mapped loading, and clear load errors."""

from __future__ import annotations

import json
import mmap

import numpy as np
import pytest

from recsys.domain import Publication, Query
from recsys.errors import EngineLoadError, IncompatibleEngine
from recsys.registry import Registry
from recsys.testing import sample_publications
from recsys_engine_lexical import LexicalEngine
from recsys_engine_lexical.engine import MAX_EVIDENCE
from recsys_engine_lexical.files import MappedSentences

SEGMENT_FILES = {
    "segment.json", "vocabulary.json", "document_frequency.npy", "publications.json", "fingerprints.npy",
    "sentence_offsets.npy", "sentences.txt", "sentence_text_offsets.npy",
    *(f"{m}.{p}.npy" for m in ("publication_tf", "sentence_tf") for p in ("data", "indices", "indptr")),
}
SEGMENT = "segments/s000001"


def _memory_mapped(array):
    while array is not None and not isinstance(array, np.memmap | mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


@pytest.fixture(scope="module")
def engine():
    engine = LexicalEngine()
    engine.fit(sample_publications())
    return engine


@pytest.fixture
def saved(engine, tmp_path):
    engine.save(tmp_path)
    return tmp_path


def test_registered_as_lexical_by_its_distribution():
    record = {r.name: r for r in Registry.discover().records()}["lexical"]
    assert record.distribution == "recsys-engine-lexical"
    assert record.engine_class is LexicalEngine


def test_a_publications_own_words_score_one(engine):
    pub = sample_publications()[7]
    recs = engine.recommend(Query(text=f"{pub.title}. {pub.abstract}", k=2))
    assert recs[0].publication_id == pub.id
    assert recs[0].score == pytest.approx(1.0, abs=1e-5)
    assert 0 < recs[1].score < 1


def test_evidence_pairs_each_query_sentence_with_its_best_sentence(engine):
    text = "Pulsars were timed in globular clusters. Unrelated zqxv words here."
    recs = engine.recommend(Query(text=text, k=3))
    assert recs[0].publication_id == "astro-04"
    (evidence,) = recs[0].evidence  # the second query sentence matches nothing
    assert evidence.query_sentence == "Pulsars were timed in globular clusters."
    assert evidence.sentence == "Radio telescope survey of pulsars in globular clusters"  # the title
    assert 0 < evidence.score <= 1
    assert all(len(r.evidence) <= MAX_EVIDENCE for r in recs)


def test_by_id_evidence_comes_from_both_publications(engine):
    pubs = {p.id: p for p in sample_publications()}
    for rec in engine.recommend(Query(publication_id="rob-02", k=4)):
        assert rec.evidence
        for ev in rec.evidence:
            assert ev.query_sentence in pubs["rob-02"].body
            assert ev.sentence in pubs[rec.publication_id].body


def test_unknown_words_give_no_recommendation(engine):
    assert engine.recommend(Query(text="Zqxv blorft quuxian.")) == []


def test_fit_reports_split_then_index():
    calls = []

    def progress(stage, done, total=None):
        calls.append((stage, done, total))

    LexicalEngine().fit(sample_publications(), progress=progress)
    assert calls[0] == ("split", 20, 20)
    assert [c[0] for c in calls[1:]] == ["index"] * 4 and calls[-1] == ("index", 3, 3)


def test_saves_the_documented_plain_files(engine, saved):
    assert {p.name for p in saved.iterdir()} == {"lexical.json", "segments.json", "segments"}
    assert {p.name for p in (saved / SEGMENT).iterdir()} == SEGMENT_FILES
    lines = (saved / SEGMENT / "sentences.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 80 and lines[0] == "Dark matter halos around dwarf galaxies"
    config = json.loads((saved / "lexical.json").read_text())
    assert config["format"] == 2 and config["tokenizer"]["stemming"] is True
    state = json.loads((saved / "segments.json").read_text())
    assert state["segments"] == [{"id": "s000001", "publications": 20, "sentences": 80, "deleted": 0}]
    assert state["next"] == 2 and state["publications"] == 20


def test_loads_memory_mapped(saved):
    with LexicalEngine.load(saved) as loaded:
        (segment,) = loaded.index.segments
        for array in (segment.publication_tf.data, segment.sentence_tf.indices, segment.sentence_offsets,
                      segment.fingerprints, segment.document_frequency):
            assert _memory_mapped(array)
        assert isinstance(segment.sentences, MappedSentences)
        assert segment.sentences[1] == "We measure the rotation curves of forty dwarf galaxies with radio telescopes."


def test_loaded_engine_keeps_the_builds_tokenizer(tmp_path):
    engine = LexicalEngine(stemming=False)
    engine.fit(sample_publications())
    engine.save(tmp_path)
    loaded = LexicalEngine.load(tmp_path)
    assert loaded.index.tokenizer.stemming is False
    # Only astro-01 says "telescopes"; three others say "telescope".
    assert [r.publication_id for r in loaded.recommend(Query(text="telescopes", k=20))] == ["astro-01"]
    stemmed = LexicalEngine()
    stemmed.fit(sample_publications())
    assert len(stemmed.recommend(Query(text="telescopes", k=20))) == 4


def test_accents_and_case_match_across_query_and_corpus(tmp_path):
    engine = LexicalEngine()
    engine.fit([
        Publication(id="a", title="Études de la Straße", abstract="Über große Städte."),
        Publication(id="b", title="Other things", abstract="Nothing similar here."),
    ])
    assert [r.publication_id for r in engine.recommend(Query(text="ÉTUDES strasse", k=5))] == ["a"]


def test_closed_engine_says_so(saved):
    loaded = LexicalEngine.load(saved)
    loaded.close()
    with pytest.raises(RuntimeError, match="holds no index"):
        loaded.recommend(Query(text="galaxies"))


def test_load_names_a_missing_file(saved):
    (saved / SEGMENT / "sentence_tf.indices.npy").unlink()
    with pytest.raises(EngineLoadError, match="sentence_tf.indices.npy is missing"):
        LexicalEngine.load(saved)


def test_load_refuses_another_format(saved):
    config = json.loads((saved / "lexical.json").read_text())
    (saved / "lexical.json").write_text(json.dumps(dict(config, format=3)))
    with pytest.raises(IncompatibleEngine, match="format 3"):
        LexicalEngine.load(saved)


def test_load_refuses_indices_outside_the_vocabulary(saved):
    path = saved / SEGMENT / "publication_tf.indices.npy"
    indices = np.load(path)
    indices[-1] = 10**6
    np.save(path, indices)
    with pytest.raises(EngineLoadError, match="outside the vocabulary"):
        LexicalEngine.load(saved)


def test_load_refuses_a_truncated_array(saved):
    path = saved / SEGMENT / "sentence_tf.data.npy"
    np.save(path, np.load(path)[:-1])
    with pytest.raises(EngineLoadError, match=r"sentence_tf\.data\.npy holds float32 \(\d+,\), expected"):
        LexicalEngine.load(saved)


def test_load_never_unpickles(saved):
    np.save(saved / SEGMENT / "document_frequency.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EngineLoadError, match="cannot load .*document_frequency.npy as a plain numpy array"):
        LexicalEngine.load(saved)


def test_load_refuses_sentence_offsets_that_do_not_match_the_text(saved):
    (saved / SEGMENT / "sentences.txt").write_text("short\n", encoding="utf-8")
    with pytest.raises(EngineLoadError, match="sentence_text_offsets.npy holds offsets"):
        LexicalEngine.load(saved)
