"""The recsys engine conformance suite, run against the lexical engine."""

from __future__ import annotations

import pytest

from recsys.testing import sample_publications
from recsys.testing.conformance import EngineConformance
from recsys_engine_lexical import LexicalEngine


class TestLexicalConformance(EngineConformance):
    """On the bundled demo corpus (the suite's default)."""

    engine_class = LexicalEngine


class TestLexicalConformanceOnSamples(EngineConformance):
    """On the 20 sample publications: small labels (5 each), so filters must over-fetch."""

    engine_class = LexicalEngine

    @pytest.fixture(scope="class")
    @classmethod
    def corpus(cls):
        return sample_publications()
