"""build_archive with small test engines (loading: tests/unit/test_load.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import recsys
from recsys.archive import verify
from recsys.build import build_archive
from recsys.config import Settings
from recsys.errors import EngineNotFound, InvalidArchive, SourceError
from tests.support.engines import BigFileEngine, publications, registry, registry_with_distribution

SETTINGS = Settings()


@pytest.fixture
def engines(tmp_path):
    return registry_with_distribution(tmp_path / "site-packages", version="1.2.3")


def build(tmp_path: Path, engines, engine: str = "tiny", settings: Settings = SETTINGS, **kwargs):
    out = tmp_path / "out" / "engine.zip"
    return out, build_archive(publications(5), out, engine=engine, registry=engines, settings=settings, **kwargs)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_build_archive_writes_a_verified_archive(tmp_path, engines):
    progress: list[tuple[str, int, int | None]] = []

    out, built = build(
        tmp_path, engines, progress=lambda stage, done, total=None: progress.append((stage, done, total))
    )

    manifest = built.manifest
    assert built.path == out and verify(out, engines={"tiny"}) == built
    assert (manifest.engine, manifest.engine_version, manifest.recsys_version) == ("tiny", "1.2.3", recsys.__version__)
    assert (manifest.publications, manifest.sentences, manifest.model, manifest.dimension) == (5, 5, "words", 1)
    assert [f.path for f in manifest.files] == ["index/lengths.npy", "publications.json"]
    assert progress == [("index", 5, 5)]
    assert files_in(tmp_path / "out") == ["engine.zip"]  # the temporary folder is gone


def test_build_archive_gives_fit_the_previous_engine(tmp_path, engines):
    previous = tmp_path / "previous"
    previous.mkdir()
    _, built = build(tmp_path, engines, previous=previous)
    assert built.manifest.extra == {"reused": str(previous)}


def test_build_archive_puts_its_temporary_folder_in_workdir(tmp_path, engines, monkeypatch):
    workdir = tmp_path / "work"
    seen = []
    real_pack = recsys.build.pack

    def spying_pack(folder, out, **kwargs):
        seen.append(folder)
        return real_pack(folder, out, **kwargs)

    monkeypatch.setattr(recsys.build, "pack", spying_pack)
    build(tmp_path, engines, workdir=workdir)
    assert seen[0].parent.parent == workdir and files_in(workdir) == []


def test_build_archive_removes_its_temporary_folder_when_fit_fails(tmp_path, engines):
    with pytest.raises(SourceError, match="refuses every corpus"):
        build(tmp_path, engines, engine="failing-fit")
    assert files_in(tmp_path / "out") == []


def test_build_archive_removes_an_archive_that_fails_verification(tmp_path, engines):
    settings = SETTINGS.replace(archive_max_file_bytes=BigFileEngine.size - 1)
    with pytest.raises(InvalidArchive, match="member 'blob.bin' is 65536 bytes, over the per-file limit"):
        build(tmp_path, engines, engine="big-file", settings=settings)
    assert files_in(tmp_path / "out") == []


def test_build_archive_of_a_missing_engine_names_the_installed_ones(tmp_path):
    with pytest.raises(EngineNotFound, match=r"no engine named 'annoy' is installed \(installed: tiny\)"):
        build(tmp_path, registry("tiny"), engine="annoy")


def test_build_archive_without_a_distribution_records_no_engine_version(tmp_path):
    _, built = build(tmp_path, registry("tiny"))
    assert built.manifest.engine_version is None
