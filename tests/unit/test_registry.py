"""The engine registry: discovery, broken plugins reported without hiding others, clear errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from recsys.engine import Engine
from recsys.errors import EngineLoadError, EngineNotFound
from recsys.registry import Registry, valid_engine_name


class GoodEngine(Engine):
    name = "good"

    def fit(self, publications, *, progress=None, previous=None):
        pass

    def save(self, folder):
        raise NotImplementedError

    @classmethod
    def load(cls, folder, settings=None):
        return cls(settings)

    def recommend(self, query):
        return []

    @property
    def publication_count(self):
        return 0


class Misnamed(GoodEngine):
    name = "other"


NOT_AN_ENGINE = object()


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, "recsys.engines")


HERE = __name__


def make_registry(load: bool = True) -> Registry:
    return Registry(
        [
            ep("good", f"{HERE}:GoodEngine"),
            ep("broken", "recsys_no_such_module_xyz:Engine"),
            ep("notengine", f"{HERE}:NOT_AN_ENGINE"),
            ep("misnamed", f"{HERE}:Misnamed"),
            ep("Bad Name", f"{HERE}:GoodEngine"),
        ],
        load=load,
    )


def test_a_broken_plugin_is_reported_and_does_not_hide_the_others():
    registry = make_registry()
    by_name = {r.name: r for r in registry.records()}
    assert by_name["good"].loaded and by_name["good"].status == "loaded"
    assert by_name["broken"].status == "broken"
    assert "ModuleNotFoundError" in by_name["broken"].error and "recsys_no_such_module_xyz" in by_name["broken"].error
    assert "not a subclass of recsys.engine.Engine" in by_name["notengine"].error
    assert "registered as 'misnamed'" in by_name["misnamed"].error
    assert "invalid engine name" in by_name["Bad Name"].error
    assert registry.get("good") is GoodEngine
    assert registry.usable() == ["good"]


def test_asking_for_a_missing_engine_names_the_installed_ones():
    with pytest.raises(EngineNotFound) as info:
        make_registry().get("annoy")
    assert "no engine named 'annoy'" in str(info.value)
    assert "installed: good" in str(info.value)
    assert "pip install" in str(info.value)


def test_asking_for_a_broken_engine_gives_its_cause():
    with pytest.raises(EngineLoadError, match="import failed: ModuleNotFoundError"):
        make_registry().get("broken")


def test_listing_without_loading_imports_nothing_and_loads_on_demand():
    registry = make_registry(load=False)
    good = {r.name: r for r in registry.records()}["good"]
    assert good.status == "not loaded" and good.engine_class is None
    assert registry.get("good") is GoodEngine
    with pytest.raises(EngineLoadError):
        registry.get("broken")


def test_records_serialise_for_the_cli_and_the_api():
    data = {r["name"]: r for r in (rec.to_dict() for rec in make_registry().records())}
    assert set(data["good"]) == {"name", "entry_point", "distribution", "version", "status", "error"}
    assert data["broken"]["status"] == "broken"


def test_installed_plugins_are_discovered():
    # The lexical plugin is installed by the project's install step (see README).
    registry = Registry.discover(load=False)
    assert "lexical" in registry.names()
    assert registry.version_of("lexical")


@pytest.mark.parametrize(("name", "ok"), [("annoy", True), ("bm-25", True), ("A", False), ("1x", False), ("", False)])
def test_engine_name_form(name, ok):
    assert valid_engine_name(name) is ok
