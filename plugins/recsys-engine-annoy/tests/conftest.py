"""Fixtures of the annoy plugin's tests: one model export and one small build per session.

The real all-MiniLM-L6-v2 model is used throughout (it is small); the corpus is a slice
of the bundled demo corpus so that a build takes seconds on two cores.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from recsys.config import Settings
from recsys.domain import Publication
from recsys.sources import DemoSource, load_publications
from recsys_engine_annoy import AnnoyEngine

#: Publications per label taken from the demo corpus.
PER_LABEL = 8


def _small_corpus() -> list[Publication]:
    taken: dict[str | None, int] = {}
    corpus = []
    for pub in load_publications(DemoSource()):
        if taken.get(pub.label, 0) < PER_LABEL:
            taken[pub.label] = taken.get(pub.label, 0) + 1
            corpus.append(pub)
    return corpus


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder (ONNX exports, model hash) for the whole session."""
    return tmp_path_factory.mktemp("annoy-cache")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("annoy-data"), cache_dir=model_cache)


@pytest.fixture(scope="session")
def small_corpus() -> list[Publication]:
    """The first PER_LABEL publications of each label of the demo corpus (about 100)."""
    return _small_corpus()


@pytest.fixture(scope="session")
def engine(settings: Settings, small_corpus: list[Publication]) -> Iterator[AnnoyEngine]:
    """An engine fitted on the small corpus with the default (auto) backend."""
    built = AnnoyEngine(settings)
    built.fit(small_corpus)
    yield built
    built.close()


@pytest.fixture(scope="session")
def saved(engine: AnnoyEngine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("annoy-saved")
    engine.save(folder)
    return folder


class WordHashEncoder:
    """A deterministic stand-in for the model (tests of segments, tombstones and merges):
    a sentence's vector is the normalised sum of a fixed random vector per word, so texts
    sharing words are near, and the same text always gets the same vector, whatever the
    batch. It counts what it is asked to encode."""

    backend = "onnx"
    dimension = 384

    def __init__(self) -> None:
        self.encoded: list[str] = []
        self._words: dict[str, np.ndarray] = {}

    def _word(self, word: str) -> np.ndarray:
        vector = self._words.get(word)
        if vector is None:
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            vector = self._words[word] = np.random.default_rng(seed).standard_normal(self.dimension)
        return vector

    def encode(self, sentences: Sequence[str], **_: object) -> np.ndarray:
        self.encoded.extend(sentences)
        out = np.zeros((len(sentences), self.dimension), dtype=np.float32)
        for row, sentence in enumerate(sentences):
            words = re.findall(r"\w+", sentence.lower()) or ["<empty>"]
            total = np.sum([self._word(w) for w in words], axis=0)
            out[row] = total / np.linalg.norm(total)
        return out

    def close(self) -> None:
        return None


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> WordHashEncoder:
    """Every build and text query of the annoy engine uses one WordHashEncoder (the model's
    hash is still the packaged model's, so engines stay compatible with each other)."""
    from recsys_engine_annoy import engine as engine_module

    encoder = WordHashEncoder()
    monkeypatch.setattr(engine_module, "make_encoder", lambda *args, **kwargs: encoder)
    monkeypatch.setattr(engine_module, "get_encoder", lambda *args, **kwargs: encoder)
    monkeypatch.setattr(engine_module.AnnoyEngine, "_build_backend", lambda self, model, previous: "onnx")
    return encoder
