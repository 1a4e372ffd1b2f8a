"""The quality gate (recsys.quality): a build measures itself against the engine in service,
and the API's store refuses a worse one unless forced. Real builds of the lexical engine
over the demo corpus."""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path

import pytest

from recsys import archive
from recsys.archive import Limits
from recsys.build import build_archive
from recsys.config import Settings
from recsys.errors import QualityGate
from recsys.quality import regression
from recsys.registry import GROUP, Registry
from recsys.sources import DemoSource, load_publications
from recsys_api.archive_store import DiskArchiveStore

pytest.importorskip("recsys_engine_lexical")

SETTINGS = Settings()
REGISTRY = Registry([metadata.EntryPoint("lexical", "recsys_engine_lexical:LexicalEngine", GROUP)])
CORPUS = load_publications(DemoSource())


def build(tmp_path: Path, name: str, corpus, previous: Path | None = None):
    out = tmp_path / f"{name}.zip"
    return build_archive(corpus, out, engine="lexical", registry=REGISTRY, settings=SETTINGS, previous=previous)


def unpacked(tmp_path: Path, built) -> Path:
    folder = tmp_path / f"unpacked-{built.manifest.version}"
    archive.unpack(built.path, folder, engines=REGISTRY.names())
    return folder


def install(store: DiskArchiveStore, built, **kwargs):
    with open(built.path, "rb") as stream:
        return store.install(stream, length=built.path.stat().st_size, **kwargs)


def test_a_build_whose_corpus_lost_half_its_abstracts_is_stopped_by_the_gate(tmp_path):
    store = DiskArchiveStore(tmp_path / "store", Limits(), quality_tolerance=0.02)
    first = build(tmp_path, "first", CORPUS)
    assert first.manifest.quality is None  # the first engine: nothing to compare with
    install(store, first)
    current = unpacked(tmp_path, first)

    damaged = [dataclasses.replace(p, abstract="") if i % 2 else p for i, p in enumerate(CORPUS)]
    bad = build(tmp_path, "bad", damaged, previous=current)
    quality = bad.manifest.quality
    assert quality is not None and quality["against"] == first.manifest.version
    worse = regression(quality, 0.02)
    assert worse is not None, quality
    with pytest.raises(QualityGate) as refused:
        install(store, bad)
    assert refused.value.metric == worse[0] and refused.value.new == worse[1] and refused.value.current == worse[2]
    assert worse[0] in str(refused.value) and "force=true" in str(refused.value)
    assert store.current().version == first.manifest.version  # nothing replaced the working engine

    # a healthy rebuild of the same corpus passes, with the figures in its manifest
    good = build(tmp_path, "good", CORPUS, previous=current)
    assert good.manifest.quality is not None and regression(good.manifest.quality, 0.02) is None
    for pair in good.manifest.quality["metrics"].values():
        assert pair["new"] == pytest.approx(pair["current"])
    # forced, the damaged one is made current anyway, and GET /v1/engine says so (also after a restart)
    assert install(store, bad, force=True).version == bad.manifest.version
    shown = DiskArchiveStore(tmp_path / "store", Limits(), quality_tolerance=0.02).current().to_dict()
    assert shown["quality"] == quality
    assert shown["quality_gate"] == {"outcome": "forced", "against": first.manifest.version, "tolerance": 0.02,
                                     "metric": worse[0], "new": worse[1], "current": worse[2]}
    assert store.rollback().to_dict()["quality_gate"]["outcome"] == "not_applied"


def test_the_gate_is_skipped_for_a_change_of_plugin_and_holds_within_the_tolerance(tmp_path):
    store = DiskArchiveStore(tmp_path / "store", Limits(), quality_tolerance=0.5)
    first = build(tmp_path, "first", CORPUS)
    assert install(store, first).gate == {"outcome": "not_applied", "reason": "the first engine"}
    damaged = [dataclasses.replace(p, abstract="") if i % 2 else p for i, p in enumerate(CORPUS)]
    bad = build(tmp_path, "bad", damaged, previous=unpacked(tmp_path, first))
    installed = install(store, bad)
    assert installed.version == bad.manifest.version  # within a tolerance of 0.5
    assert installed.gate == {"outcome": "passed", "against": first.manifest.version, "tolerance": 0.5}
    assert regression({"against": "v", "metrics": {"by_id_p@10": {"new": 0.4, "current": 0.5}}}, 0.02) == (
        "by_id_p@10", 0.4, 0.5)
    assert regression({"against": "v", "metrics": {"by_id_p@10": {"new": 0.49, "current": 0.5}}}, 0.02) is None
    assert regression(None, 0.02) is None
