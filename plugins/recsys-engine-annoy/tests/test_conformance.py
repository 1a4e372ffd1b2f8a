"""The recsys engine conformance suite, run against the annoy engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.domain import Publication
from recsys.testing.conformance import EngineConformance
from recsys_engine_annoy import AnnoyEngine


class TestAnnoyConformance(EngineConformance):
    """On a slice of the demo corpus (12 labels x 8), with the real model and the default backend."""

    engine_class = AnnoyEngine
    slow_tests = ("test_fresh_process_gives_same_answers", "test_archive_round_trip")

    @pytest.fixture(scope="class")
    @classmethod
    def corpus(cls, small_corpus: list[Publication]) -> list[Publication]:
        return small_corpus

    @pytest.fixture(scope="class")
    @classmethod
    def engine_settings(cls, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
        return Settings(data_dir=tmp_path_factory.mktemp("engine-data"), cache_dir=model_cache)
