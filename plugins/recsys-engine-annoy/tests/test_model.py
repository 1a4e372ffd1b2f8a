"""The model's identity: offline loading, and a weights hash computed once per file state."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys_engine_annoy import model as model_module
from recsys_engine_annoy.model import force_offline, model_sha256, packaged_model_path, resolve_model


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    """A model-like folder of small files (hashing needs no real weights)."""
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text("[]")
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    (folder / "1_Pooling" / "config.json").write_text("{}")
    (folder / "README.md").write_text("docs")
    return folder


@pytest.fixture
def hash_calls(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = model_module._hash_files

    def counting(folder, files):
        calls.append(folder)
        return real(folder, files)

    monkeypatch.setattr(model_module, "_hash_files", counting)
    monkeypatch.setattr(model_module, "_hash_memo", {})
    return calls


def test_force_offline_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    force_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_the_hash_is_computed_once_per_file_state(small_model, tmp_path, hash_calls, monkeypatch):
    cache = tmp_path / "cache"
    first = model_sha256(small_model, cache)
    assert model_sha256(small_model, cache) == first
    assert len(hash_calls) == 1
    # A new process (empty memo) finds it in the cache folder
    monkeypatch.setattr(model_module, "_hash_memo", {})
    assert model_sha256(small_model, cache) == first
    assert len(hash_calls) == 1
    # A changed weight file is hashed again and gives another hash
    (small_model / "model.safetensors").write_bytes(b"\1" * 1000)
    assert model_sha256(small_model, cache) != first
    assert len(hash_calls) == 2


def test_documentation_does_not_change_the_hash(small_model, hash_calls):
    before = model_sha256(small_model)
    (small_model / "README.md").write_text("other docs")
    assert model_sha256(small_model) == before


def test_the_packaged_model_is_the_default(tmp_path):
    info = resolve_model(Settings(cache_dir=tmp_path))
    assert info.name == "all-MiniLM-L6-v2"
    assert info.path == packaged_model_path().resolve()
    assert len(info.sha256) == 64


def test_a_copied_model_keeps_its_identity(small_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_model, copy)
    assert model_sha256(copy) == model_sha256(small_model)
