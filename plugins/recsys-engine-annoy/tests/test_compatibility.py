"""An engine is served only with the model and backend it was built with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.domain import Query
from recsys.errors import ConfigError, IncompatibleEngine
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.model import model_sha256, packaged_model_path
from recsys_engine_annoy.settings import SETTINGS


def _copy_with(saved: Path, tmp_path: Path, **changes: object) -> Path:
    folder = tmp_path / "engine"
    shutil.copytree(saved, folder)
    info = json.loads((folder / "engine.json").read_text())
    info.update(changes)
    (folder / "engine.json").write_text(json.dumps(info))
    return folder


def test_another_model_is_refused(saved, settings, tmp_path):
    folder = _copy_with(saved, tmp_path, model="other-model", model_sha256="0" * 64)
    with pytest.raises(IncompatibleEngine, match="other-model.*RECSYS_MODEL"):
        AnnoyEngine.load(folder, settings)


def test_a_model_folder_with_other_files_is_another_model(saved, settings, tmp_path):
    # Given a copy of the packaged model whose pooling config differs (weights linked, not copied)
    source = packaged_model_path()
    copy = tmp_path / "model"
    for path in source.rglob("*"):
        target = copy / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    config = copy / "sentence_bert_config.json"
    config.unlink()
    config.write_text('{"max_seq_length": 128, "do_lower_case": false}')
    # Then its hash differs, and an engine built with the packaged model is refused under it
    assert model_sha256(copy) != model_sha256(source)
    with pytest.raises(IncompatibleEngine, match="built with model 'all-MiniLM-L6-v2'"):
        AnnoyEngine.load(saved, settings.with_plugin(SETTINGS, model=copy))


def test_another_backend_named_in_the_settings_is_refused(saved, settings):
    with pytest.raises(IncompatibleEngine, match="RECSYS_ANNOY_EMBEDDING_BACKEND='torch'"):
        AnnoyEngine.load(saved, settings.with_plugin(SETTINGS, embedding_backend="torch"))


def test_auto_serves_with_the_engines_backend(saved, settings, engine):
    built_with = engine.info.backend
    loaded = AnnoyEngine.load(saved, settings.with_plugin(SETTINGS, embedding_backend="auto"))
    try:
        assert loaded.info.backend == built_with
        assert loaded.encoder().backend == built_with
        assert loaded.recommend(Query(text="Robots that walk on sand.", k=3))
    finally:
        loaded.close()


def test_a_missing_model_folder_is_a_clear_error(tmp_path, saved):
    with pytest.raises(ConfigError, match="does not exist.*RECSYS_MODEL"):
        AnnoyEngine.load(saved, Settings().with_plugin(SETTINGS, model=tmp_path / "nowhere"))


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path, saved):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a SentenceTransformer model folder"):
        AnnoyEngine.load(saved, Settings().with_plugin(SETTINGS, model=tmp_path / "empty"))
