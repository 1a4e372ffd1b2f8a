"""A build records an example query from its corpus in the manifest (``example``), which
the API's Swagger examples use (tests/unit/api/test_openapi_examples.py)."""

from __future__ import annotations

import json

from recsys.build import EXAMPLE_CHARS, build_archive, corpus_example
from recsys.config import Settings
from recsys.domain import Publication
from recsys.manifest import MAX_EXAMPLE_CHARS, Manifest
from tests.support.engines import publications, registry_with_distribution


def test_a_build_records_an_example_query_from_its_corpus(tmp_path):
    engines = registry_with_distribution(tmp_path / "site-packages", version="1.2.3")
    corpus = publications(5)

    built = build_archive(corpus, tmp_path / "engine.zip", engine="tiny", registry=engines, settings=Settings())

    assert built.manifest.example == {"publication_id": "graph-2",
                                      "text": "We study graph problems of size 2. The graph results hold for word2."}
    assert built.manifest.example == corpus_example(list(reversed(corpus)))  # the same whatever the order


def test_the_example_is_the_opening_of_a_long_abstract_cut_at_a_sentence_or_a_word():
    sentence = "Dark matter halos around dwarf galaxies are denser than the simulations predict. "
    long_one = Publication(id="p1", title="Halos", abstract=sentence * 20)
    one_sentence = Publication(id="p1", title="Halos", abstract="word " * 200)

    text = corpus_example([long_one])["text"]
    cut = corpus_example([one_sentence])["text"]

    assert len(text) <= EXAMPLE_CHARS and text.endswith("predict.") and text.startswith("Dark matter")
    assert len(cut) <= EXAMPLE_CHARS + 1 and cut.endswith("word…")


def test_publications_without_body_text_give_no_example():
    assert corpus_example([]) is None
    assert corpus_example([Publication(id="p1", title="Only a title", abstract=" ")]) is None


def manifest_data(**extra):
    data = {"format": 1, "engine": "stub", "version": "20261128T211800123456Z",
            "created_at": "2026-11-28T21:18:00.123456Z", "publications": 1, "sentences": 1, "files": []}
    return data | extra


def test_the_manifest_keeps_a_usable_example_and_drops_an_unusable_one():
    kept = Manifest.from_dict(manifest_data(example={"text": " A text. ", "publication_id": "p1", "other": 1}))
    assert kept.example == {"text": "A text.", "publication_id": "p1"}
    assert json.loads(kept.to_json())["example"] == kept.example
    assert Manifest.from_dict(json.loads(kept.to_json())) == kept

    for unusable in ("a text", {"text": 3}, {"text": "x" * (MAX_EXAMPLE_CHARS + 1)}, {"publication_id": " "}, None):
        assert Manifest.from_dict(manifest_data(example=unusable)).example is None
    old = Manifest.from_dict(manifest_data())
    assert old.example is None and "example" not in old.to_dict()
