"""The saved folder: plain files, memory-mapped loading, clear errors for damaged files."""

from __future__ import annotations

import json
import mmap
import shutil
from pathlib import Path

import numpy as np
import pytest

from recsys.domain import Query
from recsys.errors import EngineLoadError
from recsys.registry import Registry
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.files import load_array

SEGMENT_FILES = {
    "segment.json", "publications.jsonl", "fingerprints.npy", "sentences.txt", "sentence_offsets.npy",
    "sentence_starts.npy", "sentence_vectors.npy", "publication_vectors.npy",
    # the lexical half of the hybrid score (recsys_engine_annoy.lexical)
    "lexical.vocabulary.json", "lexical.document_frequency.npy", "lexical.publication_tf.data.npy",
    "lexical.publication_tf.indices.npy", "lexical.publication_tf.indptr.npy",
}


def _mapped(array) -> bool:
    while array is not None and not isinstance(array, np.memmap | mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


def test_registered_as_annoy_by_its_distribution():
    record = {r.name: r for r in Registry.discover().records()}["annoy"]
    assert record.distribution == "recsys-engine-annoy"
    assert record.engine_class is AnnoyEngine


def test_saves_the_documented_files(saved):
    # one segment, and no Annoy file: a segment this small is scanned exactly
    assert {p.name for p in saved.iterdir()} == {"engine.json", "segments"}
    segment = saved / "segments" / "s000001"
    assert {p.name for p in segment.iterdir()} == SEGMENT_FILES
    info = json.loads((saved / "engine.json").read_text())
    assert info["model"] == "all-MiniLM-L6-v2" and len(info["model_sha256"]) == 64
    assert info["backend"] == "onnx" and info["dimension"] == 384 and info["format"] == 2
    assert load_array(segment / "sentence_vectors.npy").dtype == np.float16
    assert load_array(segment / "publication_vectors.npy").dtype == np.float32


def test_load_memory_maps_the_large_files(saved, settings):
    engine = AnnoyEngine.load(saved, settings)
    try:
        (segment,) = engine.data.segments
        assert _mapped(segment.sentence_vectors) and _mapped(segment.publication_vectors)
        maps = Path("/proc/self/maps").read_text()
        for name in ("sentences.txt", "sentence_vectors.npy", "publication_vectors.npy"):
            assert str(saved / "segments" / "s000001" / name) in maps, f"{name} is not memory-mapped"
        assert engine.recommend(Query(publication_id=engine.data.publications.ids[0], k=3))
    finally:
        engine.close()


def test_a_closed_engine_says_so(saved, settings):
    engine = AnnoyEngine.load(saved, settings)
    engine.close()
    with pytest.raises(EngineLoadError, match="fit\\(\\) or load\\(\\)"):
        engine.recommend(Query(text="anything", k=1))


SEGMENT = Path("segments/s000001")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / SEGMENT / "sentence_vectors.npy").write_bytes(b"\x93NUMPY garbage"), "sentence_vectors.npy"),
        (lambda f: (f / "engine.json").write_text('{"format": 99}'), "format 99"),
        (lambda f: (f / SEGMENT / "publication_vectors.npy").unlink(), "publication_vectors.npy"),
        (lambda f: (f / SEGMENT / "sentences.txt").write_text("short\n"), "sentences.txt"),
        (lambda f: (f / SEGMENT / "publications.jsonl").write_text('{"id": "x"}\n'), "publications.jsonl"),
        (lambda f: np.save(f / SEGMENT / "sentence_starts.npy", np.arange(3)), "sentence_starts.npy"),
        (lambda f: np.save(f / SEGMENT / "fingerprints.npy", np.zeros((2, 32), dtype=np.uint8)), "fingerprints.npy"),
    ],
)
def test_damaged_files_are_refused_with_the_file_named(saved, settings, tmp_path, damage, message):
    folder = tmp_path / "engine"
    shutil.copytree(saved, folder)
    damage(folder)
    with pytest.raises(EngineLoadError, match=message):
        AnnoyEngine.load(folder, settings)


def test_object_arrays_are_never_loaded(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EngineLoadError, match="objects.npy"):
        load_array(tmp_path / "objects.npy")


def test_evidence_pairs_query_sentences_with_the_publications_own(engine, small_corpus):
    pub = small_corpus[20]
    recs = engine.recommend(Query(text=f"{pub.title}. {pub.abstract}", k=1))
    assert recs[0].publication_id == pub.id and recs[0].score > 0.95
    assert all(ev.score > 0.99 for ev in recs[0].evidence), "each own sentence should match itself"
    scores = [ev.score for ev in recs[0].evidence]
    assert scores == sorted(scores, reverse=True)
