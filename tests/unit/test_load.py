"""load_engine with small test engines, on folders unpacked from built archives."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.archive import read_manifest, unpack
from recsys.build import build_archive
from recsys.config import Settings
from recsys.domain import Query
from recsys.errors import EngineLoadError, EngineNotFound
from recsys.load import load_engine
from tests.support.engines import publications, registry, registry_with_distribution

SETTINGS = Settings()


@pytest.fixture
def engines(tmp_path):
    return registry_with_distribution(tmp_path / "site-packages", version="1.2.3")


def unpacked(tmp_path: Path, engines, engine: str = "tiny") -> Path:
    out = build_archive(publications(5), tmp_path / "out" / "engine.zip", engine=engine, registry=engines,
                        settings=SETTINGS).path
    folder = tmp_path / "unpacked"
    unpack(out, folder)
    return folder


def test_load_engine_loads_an_unpacked_engine_with_its_plugin(tmp_path, engines):
    folder = unpacked(tmp_path, engines)

    engine = load_engine(folder, registry=engines, settings=SETTINGS)

    assert engine.publication_count == read_manifest(folder).publications == 5
    assert [r.publication_id for r in engine.recommend(Query(text="graph problems", k=2))] == ["graph-0", "graph-1"]


def test_load_engine_wraps_an_unexpected_plugin_error(tmp_path, engines):
    folder = unpacked(tmp_path, engines, engine="broken-load")
    with pytest.raises(EngineLoadError) as caught:
        load_engine(folder, registry=engines, settings=SETTINGS)
    message = str(caught.value)
    assert "engine 'broken-load' failed to load" in message and str(folder) in message
    assert "ValueError: index header is garbled" in message
    assert isinstance(caught.value.__cause__, ValueError)


def test_load_engine_passes_an_engine_load_error_through(tmp_path, engines):
    folder = unpacked(tmp_path, engines, engine="incompatible")
    with pytest.raises(EngineLoadError, match="^saved with model A, this process has model B$"):
        load_engine(folder, registry=engines, settings=SETTINGS)


def test_load_engine_of_an_engine_that_is_not_installed(tmp_path, engines):
    folder = unpacked(tmp_path, engines)
    with pytest.raises(EngineNotFound, match="no engine named 'tiny' is installed"):
        load_engine(folder, registry=registry("incompatible"), settings=SETTINGS)


def test_load_engine_of_a_folder_without_manifest(tmp_path, engines):
    with pytest.raises(EngineLoadError, match="cannot load the engine in .*has no manifest.json"):
        load_engine(tmp_path, registry=engines, settings=SETTINGS)
