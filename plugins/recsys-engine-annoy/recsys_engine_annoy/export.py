"""Exporting the SentenceTransformer model to ONNX (and int8), made at first use and cached.

The export wraps the whole SentenceTransformer pipeline after tokenization — the
transformer, its pooling, any dense layer — and normalises the result, so that
onnxruntime returns the same unit vectors as ``SentenceTransformer.encode(...,
normalize_embeddings=True)``. Before an export is kept it is checked on a set of probe
sentences: the ``onnx`` export must match torch with cosine >= :data:`MIN_COSINE` on
each (or it is refused); the ``onnx-int8`` export records how close it came.

Layout under the cache folder (``RECSYS_CACHE_DIR``, by default ``<data_dir>/cache``)::

    onnx/<model hash[:16]>-onnx/        model.onnx, tokenizer.json, export.json
    onnx/<model hash[:16]>-onnx-int8/   the same, with int8 weights
    onnx/.<...>.lock                    held while one process exports

One process exports while the others wait on the lock; the files are written into a
temporary folder that is renamed into place, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.errors import EngineLoadError
from recsys.locks import file_lock
from recsys_engine_annoy.model import ModelInfo, force_offline

__all__ = ["EXPORT_FORMAT", "MIN_COSINE", "PROBE_SENTENCES", "ensure_export", "export_folder"]

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 1
#: Least cosine between an ``onnx`` export's vector and torch's, on every probe sentence.
MIN_COSINE = 0.9999
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: Sentences every export is checked on: short and long (past the token limit), symbols, LaTeX.
PROBE_SENTENCES = (
    "Graph neural networks.",
    "We propose a transformer model for protein structure prediction that outperforms prior work.",
    "Offline reinforcement learning enables policy optimization using static datasets.",
    "The error rate fell from 12.5% to 3.1% (p < 0.01) on CIFAR-10.",
    "Let $f: \\mathbb{R}^n \\to \\mathbb{R}$ be convex and $L$-smooth.",
    "Übersetzung, café, naïve — 机器学习 and émigré words.",
    "a",
    " ".join(["Large language models answer questions about scientific papers"] * 40),
)


def export_folder(cache_dir: Path, model: ModelInfo, backend: str) -> Path:
    """Where the export of ``model`` for ``backend`` lives (it may not exist yet)."""
    return cache_dir / "onnx" / f"{model.short_hash}-{backend}"


def ensure_export(model: ModelInfo, backend: str, cache_dir: Path, *, lock_timeout: float = 900.0) -> Path:
    """The folder of a complete, checked export of ``model`` for ``backend`` (``onnx`` or
    ``onnx-int8``), exporting it first when no process has yet.

    Raises EngineLoadError when the model cannot be exported or its export does not
    match torch; the ``torch`` backend still works then.
    """
    if backend not in ("onnx", "onnx-int8"):
        raise ValueError(f"no export for backend {backend!r}")
    folder = export_folder(cache_dir, model, backend)
    if _complete(folder, model):
        return folder
    if backend == "onnx-int8":
        source = ensure_export(model, "onnx", cache_dir, lock_timeout=lock_timeout)
    lock = folder.parent / f".{folder.name}.lock"
    with file_lock(lock, timeout=lock_timeout, name="the model export lock",
                   busy="another process of this machine is exporting the model (once per machine); wait for it"):
        if _complete(folder, model):  # another process made it while we waited
            return folder
        if folder.exists():
            logger.warning("removing the incomplete or outdated export in %s", folder)
            shutil.rmtree(folder)
        started = time.monotonic()
        logger.info("exporting embedding model %s to %s (once per machine)", model.name, backend)
        with _staging(folder) as staging:
            if backend == "onnx":
                _export_fp32(model, staging)
            else:
                _quantize(source, staging, model)
            staging.chmod(0o755)  # mkdtemp made it private; other users' processes read it too
            staging.rename(folder)
        logger.info("exported %s to %s in %.1f s", model.name, folder, time.monotonic() - started)
    return folder


def _complete(folder: Path, model: ModelInfo) -> bool:
    try:
        info = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(info, dict)
        and info.get("format") == EXPORT_FORMAT
        and info.get("model_sha256") == model.sha256
        and (folder / "model.onnx").is_file()
        and (folder / "tokenizer.json").is_file()
    )


@contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _load_sentence_transformer(model: ModelInfo) -> Any:
    force_offline()
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        return SentenceTransformer(str(model.path), device="cpu", local_files_only=True).eval()
    except Exception as exc:
        raise EngineLoadError(f"cannot load the embedding model from {model.path}: {type(exc).__name__}: {exc}") \
            from exc


def _export_fp32(model: ModelInfo, staging: Path) -> None:
    import torch

    st = _load_sentence_transformer(model)
    tokenizer = getattr(st, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise EngineLoadError(
            f"the embedding model {model.name} has no fast tokenizer, which the onnx backends need; "
            "set RECSYS_ANNOY_EMBEDDING_BACKEND=torch"
        )
    features = tokenizer(list(PROBE_SENTENCES[:2]), padding=True, truncation=True,
                         max_length=st.max_seq_length, return_tensors="pt")
    inputs = [name for name in _INPUTS if name in features]
    unknown = sorted(set(features) - set(_INPUTS))
    if "input_ids" not in inputs or "attention_mask" not in inputs or unknown:
        raise EngineLoadError(
            f"the embedding model {model.name} takes inputs {sorted(features)}, which the onnx export does not "
            "support; set RECSYS_ANNOY_EMBEDDING_BACKEND=torch"
        )

    class Pipeline(torch.nn.Module):
        """SentenceTransformer after tokenization, with a final normalisation."""

        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            batch: dict[str, Any] = dict(zip(inputs, tensors, strict=True))
            batch["modality"] = "text"
            embedding = self.st(batch)["sentence_embedding"]
            return torch.nn.functional.normalize(embedding, p=2.0, dim=1)

    dynamic = {name: {0: "batch", 1: "tokens"} for name in inputs}
    dynamic["embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            Pipeline().eval(),
            tuple(features[name] for name in inputs),
            str(staging / "model.onnx"),
            dynamo=False,
            input_names=inputs,
            output_names=["embedding"],
            dynamic_axes=dynamic,
            opset_version=17,
            do_constant_folding=True,
        )
    (staging / "tokenizer.json").write_text(tokenizer.backend_tokenizer.to_str(), encoding="utf-8")
    reference = _torch_vectors(st)
    info = {
        "format": EXPORT_FORMAT,
        "model": model.name,
        "model_sha256": model.sha256,
        "backend": "onnx",
        "inputs": inputs,
        "max_seq_length": int(st.max_seq_length),
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
        "dimension": int(reference.shape[1]),
        "torch": metadata.version("torch"),
        "onnxruntime": metadata.version("onnxruntime"),
    }
    (staging / "export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    cosines = _probe_cosines(staging, reference, "onnx")
    if float(cosines.min()) < MIN_COSINE:
        raise EngineLoadError(
            f"the onnx export of {model.name} does not reproduce torch's vectors (least cosine "
            f"{cosines.min():.6f} < {MIN_COSINE} on the probe sentences); set RECSYS_ANNOY_EMBEDDING_BACKEND=torch"
        )
    np.save(staging / "probe-reference.npy", reference, allow_pickle=False)
    _record_cosines(staging, cosines)


def _quantize(source: Path, staging: Path, model: ModelInfo) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weights: per-tensor int8 loses too much on CPUs without VNNI (mean cosine
    # to fp32 0.95 against 0.99 per channel, measured on the reference machine's AVX2).
    with _quiet_root_logger():  # the quantizer logs every tensor on the root logger
        quantize_dynamic(
            str(source / "model.onnx"),
            str(staging / "model.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    shutil.copyfile(source / "tokenizer.json", staging / "tokenizer.json")
    info = json.loads((source / "export.json").read_text(encoding="utf-8"))
    info["backend"] = "onnx-int8"
    (staging / "export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    reference = np.load(source / "probe-reference.npy", allow_pickle=False)
    cosines = _probe_cosines(staging, reference, "onnx-int8")
    logger.info("onnx-int8 export of %s: cosine to torch on the probe sentences: mean %.4f, least %.4f",
                model.name, cosines.mean(), cosines.min())
    _record_cosines(staging, cosines)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _torch_vectors(st: Any) -> NDArray[np.float32]:
    vectors = st.encode(list(PROBE_SENTENCES), batch_size=len(PROBE_SENTENCES), convert_to_numpy=True,
                        normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def _probe_cosines(folder: Path, reference: NDArray[np.float32], backend: str) -> NDArray[np.float32]:
    from recsys_engine_annoy.encoders import OnnxEncoder

    encoder = OnnxEncoder(folder, backend=backend, threads=1)
    try:
        vectors = encoder.encode(list(PROBE_SENTENCES), batch_size=3)
    finally:
        encoder.close()
    return np.asarray((vectors * reference).sum(axis=1), dtype=np.float32)


def _record_cosines(folder: Path, cosines: NDArray[np.float32]) -> None:
    path = folder / "export.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["probe_cosine_to_torch"] = {"mean": round(float(cosines.mean()), 6), "min": round(float(cosines.min()), 6)}
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
