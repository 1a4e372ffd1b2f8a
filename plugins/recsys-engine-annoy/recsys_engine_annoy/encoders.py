"""Sentence encoders: the SentenceTransformer model run by torch, or exported and run by onnxruntime.

Every encoder returns float32 vectors of unit length, one row per sentence, in the
order given. Sentences are sorted by length and encoded in batches of similar length
(as SentenceTransformer does), so padding costs little.

Backends (``RECSYS_ANNOY_EMBEDDING_BACKEND``):

* ``torch``: SentenceTransformer itself, on the CPU or a GPU (``RECSYS_ANNOY_DEVICE``);
* ``onnx``: the same network exported once to ONNX (:mod:`recsys_engine_annoy.export`) and
  run by onnxruntime with the model's own fast tokenizer; its vectors match torch's
  (cosine >= 0.9999, checked at export);
* ``onnx-int8``: that export with dynamically quantized int8 weights: faster, with
  slightly different vectors;
* ``auto``: ``onnx`` on a CPU, ``torch`` on a GPU (see :func:`resolve_backend`).

:func:`get_encoder` keeps one encoder per model and backend in the process, made at
first use under a lock: the model is loaded lazily and once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.config import Settings
from recsys.errors import ConfigError, EngineLoadError
from recsys_engine_annoy.model import ModelInfo, force_offline
from recsys_engine_annoy.settings import annoy_settings

__all__ = [
    "BACKENDS",
    "Encoder",
    "OnnxEncoder",
    "TorchEncoder",
    "build_threads",
    "get_encoder",
    "length_sorted_batches",
    "resolve_backend",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: The concrete backends; ``auto`` resolves to one of them.
BACKENDS = ("torch", "onnx", "onnx-int8")

#: Threads one process uses to encode queries. Worker machines run several processes,
#: each serving short queries: one thread each keeps them from fighting over the cores.
QUERY_THREADS = 1

ProgressFn = Callable[[int], None]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_threads() -> int:
    """Threads a build encodes with: every usable core (a build has the machine's attention)."""
    return usable_cores()


def length_sorted_batches(sentences: Sequence[str], batch_size: int) -> Iterator[NDArray[np.intp]]:
    """Indices of ``sentences`` in batches of at most ``batch_size``, longest first."""
    order = np.argsort([-len(s) for s in sentences], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


class Encoder(ABC):
    """Turns sentences into unit-length float32 vectors (one row per sentence)."""

    backend: str
    dimension: int

    def encode(
        self,
        sentences: Sequence[str],
        *,
        batch_size: int = 32,
        progress: ProgressFn | None = None,
    ) -> NDArray[np.float32]:
        """Encode ``sentences`` in order; ``progress(n)`` is told how many are done so far."""
        out = np.empty((len(sentences), self.dimension), dtype=np.float32)
        done = 0
        for batch in length_sorted_batches(sentences, batch_size):
            out[batch] = self._encode_batch([sentences[i] for i in batch])
            done += len(batch)
            if progress is not None:
                progress(done)
        return out

    @abstractmethod
    def _encode_batch(self, sentences: list[str]) -> NDArray[np.float32]:
        """Encode one batch of similar-length sentences."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the encoder holds (an onnxruntime session, say)."""


class TorchEncoder(Encoder):
    """SentenceTransformer on torch: the reference every other backend is checked against."""

    backend = "torch"

    def __init__(self, model: ModelInfo, *, device: str = "cpu", threads: int = QUERY_THREADS) -> None:
        force_offline()
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self.threads = threads
        _set_torch_threads(threads)
        try:
            self.model = SentenceTransformer(str(model.path), device=device, local_files_only=True)
        except Exception as exc:
            raise EngineLoadError(
                f"cannot load the embedding model from {model.path}: {type(exc).__name__}: {exc}"
            ) from exc
        self.model.eval()
        self.device = device
        self._torch = torch
        # sentence-transformers 6 renamed the method; older versions have only the first name.
        get_dimension = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        dimension = get_dimension()
        if not dimension:
            raise EngineLoadError(f"the embedding model in {model.path} does not state its vector dimension")
        self.dimension = int(dimension)

    @contextlib.contextmanager
    def threads_for_build(self) -> Iterator[None]:
        """Encode with every usable core inside the block, then go back to the query setting."""
        _set_torch_threads(build_threads())
        try:
            yield
        finally:
            _set_torch_threads(self.threads)

    def _encode_batch(self, sentences: list[str]) -> NDArray[np.float32]:
        with self._torch.inference_mode():
            vectors = self.model.encode(
                sentences,
                batch_size=len(sentences),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # allowed only before the first parallel work
        torch.set_num_interop_threads(1)


class OnnxEncoder(Encoder):
    """An exported model (see :mod:`recsys_engine_annoy.export`) run by onnxruntime.

    ``folder`` holds ``model.onnx``, ``tokenizer.json`` and ``export.json`` (inputs,
    maximum sequence length, dimension). torch is not imported.
    """

    def __init__(self, folder: Path, *, backend: str, threads: int = QUERY_THREADS) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            info: dict[str, Any] = json.loads((folder / "export.json").read_text(encoding="utf-8"))
            self.inputs: list[str] = list(info["inputs"])
            self.dimension = int(info["dimension"])
            max_length = int(info["max_seq_length"])
            pad_id, pad_token = int(info["pad_id"]), str(info["pad_token"])
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # json, key and tokenizer errors alike
            raise EngineLoadError(
                f"the exported model in {folder} is unreadable ({type(exc).__name__}: {exc}); "
                "delete that folder and it is exported again at next use"
            ) from exc
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the batch's longest
        self.tokenizer = tokenizer
        self.backend = backend
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle threads must not spin: a machine runs many worker processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def _encode_batch(self, sentences: list[str]) -> NDArray[np.float32]:
        encodings = self.tokenizer.encode_batch(sentences)
        feeds: dict[str, NDArray[np.int64]] = {}
        for name in self.inputs:
            if name == "input_ids":
                feeds[name] = np.array([e.ids for e in encodings], dtype=np.int64)
            elif name == "attention_mask":
                feeds[name] = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            else:  # token_type_ids
                feeds[name] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (vectors,) = self.session.run(None, feeds)
        return np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        del self.session


def resolve_device(settings: Settings) -> str:
    """``cpu`` or ``cuda`` from ``RECSYS_ANNOY_DEVICE`` (``auto``: a GPU when torch sees one)."""
    device = annoy_settings(settings).device
    if device == "cpu":
        return "cpu"
    if device == "auto" and not _nvidia_gpu_visible():
        return "cpu"  # no GPU driver: skip importing torch just to ask
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise ConfigError("RECSYS_ANNOY_DEVICE='cuda' but torch sees no CUDA GPU; set it to 'cpu' or 'auto'")
    return "cpu"


def _nvidia_gpu_visible() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def resolve_backend(settings: Settings) -> str:
    """The concrete backend for ``RECSYS_ANNOY_EMBEDDING_BACKEND``.

    ``auto`` is ``torch`` on a GPU, and ``onnx`` on a CPU: its vectors match torch's and it
    encodes about 1.7-3x faster. ``onnx-int8`` is about twice as fast again and ranks as well
    (measured on the full corpus, docs/engine-annoy.md), but it is never chosen
    automatically: its dynamic quantization makes a sentence's vector depend on the sentences
    encoded in the same batch (mean cosine 0.992 between batch sizes 1 and 32), so an
    incremental build no longer answers like a build from scratch, and a query that repeats a
    stored sentence does not get its stored vector. (A build with ``auto`` keeps the backend
    of the engine it extends: see ``AnnoyEngine._build_backend``.)
    """
    backend = annoy_settings(settings).embedding_backend
    if backend != "auto":
        return backend
    return "torch" if resolve_device(settings) == "cuda" else "onnx"


_encoders: dict[tuple[str, str, str], Encoder] = {}
_encoders_lock = threading.Lock()


def get_encoder(model: ModelInfo, backend: str, settings: Settings) -> Encoder:
    """This process's encoder for ``model`` and ``backend``, made at first use (thread-safe).

    For ``onnx`` backends the export is made and cached at first use. Raises ConfigError
    for an unknown backend and EngineLoadError when the model cannot be loaded.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedding backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    key = (model.sha256, str(model.path), backend)
    encoder = _encoders.get(key)
    if encoder is not None:
        return encoder
    with _encoders_lock:
        encoder = _encoders.get(key)
        if encoder is None:
            encoder = make_encoder(model, backend, settings, threads=QUERY_THREADS)
            _encoders[key] = encoder
        return encoder


def make_encoder(model: ModelInfo, backend: str, settings: Settings, *, threads: int) -> Encoder:
    """A new encoder (not cached): ``threads`` sets onnxruntime's or torch's thread count."""
    if backend == "torch":
        logger.info("loading embedding model %s (%s) with torch", model.name, model.path)
        return TorchEncoder(model, device=resolve_device(settings), threads=threads)
    from recsys_engine_annoy.export import ensure_export

    folder = ensure_export(model, backend, settings.effective_cache_dir)
    logger.info("loading embedding model %s with onnxruntime (%s, %d thread(s))", model.name, backend, threads)
    return OnnxEncoder(folder, backend=backend, threads=threads)


def clear_encoders() -> None:
    """Forget this process's encoders (tests, or to release memory)."""
    with _encoders_lock:
        for encoder in _encoders.values():
            encoder.close()
        _encoders.clear()
