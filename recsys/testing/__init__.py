"""Testing helpers for recsys and engine plugins.

* :class:`StubEngine`: a tiny deterministic engine (word overlap, one JSON file,
  no numpy) for API and worker tests;
* :func:`stub_registry`: a :class:`~recsys.registry.Registry` holding the stub
  engine, without installing an entry point;
* :func:`sample_publications`: 20 publications over 4 labels, for fast tests.

The reusable engine contract tests live in :mod:`recsys.testing.conformance`
(it imports pytest; this package does not)::

    from recsys.testing.conformance import EngineConformance

    class TestMyEngineConformance(EngineConformance):
        engine_class = MyEngine
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

from recsys.registry import GROUP, Registry
from recsys.testing.corpus import SAMPLE_LABELS, sample_publications
from recsys.testing.stub import StubEngine

__all__ = ["SAMPLE_LABELS", "StubEngine", "sample_publications", "stub_registry"]


def stub_registry() -> Registry:
    """A registry whose only engine is :class:`StubEngine`, registered as ``stub``."""
    return Registry([EntryPoint(StubEngine.name, "recsys.testing:StubEngine", GROUP)])
