"""Embedding backends: onnx reproduces torch, int8 stays close, exports are made once."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from recsys.config import Settings
from recsys.domain import Publication
from recsys_engine_annoy import export
from recsys_engine_annoy.corpus import publication_sentences
from recsys_engine_annoy.encoders import TorchEncoder, make_encoder, resolve_backend
from recsys_engine_annoy.model import resolve_model
from recsys_engine_annoy.settings import SETTINGS


@pytest.fixture(scope="module")
def sentences(small_corpus: list[Publication]) -> list[str]:
    picked = [s for pub in small_corpus[::6] for s in publication_sentences(pub)]
    return picked + ["Graph neural networks.", "a", "Übersetzung und maschinelles Lernen."]


@pytest.fixture(scope="module")
def torch_vectors(settings: Settings, sentences: list[str]) -> np.ndarray:
    encoder = make_encoder(resolve_model(settings), "torch", settings, threads=2)
    assert isinstance(encoder, TorchEncoder)
    return encoder.encode(sentences, batch_size=8)


def test_auto_is_onnx_on_a_cpu():
    assert resolve_backend(Settings().with_plugin(SETTINGS, device="cpu")) == "onnx"
    assert resolve_backend(Settings().with_plugin(SETTINGS, device="cpu", embedding_backend="onnx-int8")) == "onnx-int8"
    assert resolve_backend(Settings().with_plugin(SETTINGS, device="cpu", embedding_backend="onnx-int8")) == "onnx-int8"


def test_onnx_vectors_match_torch(settings, sentences, torch_vectors):
    encoder = make_encoder(resolve_model(settings), "onnx", settings, threads=1)
    vectors = encoder.encode(sentences, batch_size=5)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.9999, f"least cosine {cosines.min():.6f} on {sentences[int(cosines.argmin())]!r}"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_vectors(settings, sentences):
    encoder = make_encoder(resolve_model(settings), "onnx", settings, threads=1)
    one_by_one = encoder.encode(sentences, batch_size=1)
    batched = encoder.encode(sentences, batch_size=16)
    assert np.abs(one_by_one - batched).max() < 1e-5


def test_int8_is_close_to_torch_but_not_the_same(settings, sentences, torch_vectors):
    encoder = make_encoder(resolve_model(settings), "onnx-int8", settings, threads=1)
    vectors = encoder.encode(sentences, batch_size=8)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.mean() >= 0.97, f"mean cosine {cosines.mean():.4f} to torch"
    assert cosines.min() < 0.9999, "int8 vectors are identical to torch: was the model quantized at all?"


def test_export_is_reused_not_redone(settings, monkeypatch):
    model = resolve_model(settings)
    folder = export.ensure_export(model, "onnx", settings.effective_cache_dir)

    def fail(*args, **kwargs):
        raise AssertionError("exported again although a complete export exists")

    monkeypatch.setattr(export, "_export_fp32", fail)
    assert export.ensure_export(model, "onnx", settings.effective_cache_dir) == folder


def test_concurrent_first_use_exports_once(settings, tmp_path: Path, monkeypatch):
    # Given an empty cache and an export that takes a while
    model = resolve_model(settings)
    real = export.ensure_export(model, "onnx", settings.effective_cache_dir)
    calls = []

    def slow_copy(model, staging: Path) -> None:
        calls.append(staging)
        threading.Event().wait(0.5)
        for name in ("model.onnx", "tokenizer.json", "export.json", "probe-reference.npy"):
            (staging / name).write_bytes((real / name).read_bytes())

    monkeypatch.setattr(export, "_export_fp32", slow_copy)
    cache = tmp_path / "cache"
    results: list[Path] = []
    # When four threads ask for it at once
    threads = [threading.Thread(target=lambda: results.append(export.ensure_export(model, "onnx", cache)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then one exported, all got the same complete folder, and no temporary folder is left
    assert len(calls) == 1
    assert len(results) == 4 and len(set(results)) == 1
    assert sorted(p.name for p in (cache / "onnx").iterdir() if not p.name.endswith(".lock")) == [results[0].name]


def test_a_failed_export_leaves_nothing_behind(settings, tmp_path: Path, monkeypatch):
    model = resolve_model(settings)

    def broken(model, staging: Path) -> None:
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_export_fp32", broken)
    with pytest.raises(RuntimeError):
        export.ensure_export(model, "onnx", tmp_path)
    assert [p.name for p in (tmp_path / "onnx").iterdir() if not p.name.endswith(".lock")] == []



def test_int8_vectors_depend_on_the_batch_onnx_vectors_do_not(settings, sentences):
    # why auto never picks int8: its dynamic quantization scales each batch as a whole
    model = resolve_model(settings)
    for backend, least in (("onnx", 0.99999), ("onnx-int8", None)):
        encoder = make_encoder(model, backend, settings, threads=1)
        cosines = (encoder.encode(sentences, batch_size=1) * encoder.encode(sentences, batch_size=16)).sum(axis=1)
        if least is not None:
            assert cosines.min() >= least
        else:
            assert cosines.min() < 0.999
