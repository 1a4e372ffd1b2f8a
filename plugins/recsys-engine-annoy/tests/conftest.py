"""Fixtures of the annoy plugin's tests: one model export and one small build per session.

The real all-MiniLM-L6-v2 model is used throughout (it is small); the corpus is a slice
of the bundled demo corpus so that a build takes seconds on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
