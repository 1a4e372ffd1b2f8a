"""Loading an unpacked engine folder with the plugin its manifest names.

Workers (their engine cache), ``recsys recommend`` and the conformance suite load an
engine through :func:`load_engine`; building one is :mod:`recsys.build`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from recsys.archive import read_manifest
from recsys.config import Settings
from recsys.engine import Engine
from recsys.errors import EngineLoadError, InvalidArchive
from recsys.registry import Registry

__all__ = ["load_engine"]

logger = logging.getLogger(__name__)


def load_engine(folder: Path, *, registry: Registry, settings: Settings) -> Engine:
    """Load the unpacked engine in ``folder`` with the plugin its manifest names
    (EngineNotFound / EngineLoadError with the reason)."""
    started = time.monotonic()
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except InvalidArchive as exc:
        raise EngineLoadError(f"cannot load the engine in {str(folder)!r}: {exc}") from exc
    engine_class = registry.get(manifest.engine)
    try:
        engine = engine_class.load(folder, settings)
    except EngineLoadError:
        raise
    except Exception as exc:
        raise EngineLoadError(
            f"engine {manifest.engine!r} failed to load {str(folder)!r} (version {manifest.version}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(engine, engine_class):
        raise EngineLoadError(
            f"engine {manifest.engine!r} load() returned {type(engine).__name__}, not {engine_class.__name__}; "
            "fix the plugin"
        )
    if engine.publication_count != manifest.publications:
        logger.warning(
            "engine %s version %s holds %d publications, but its manifest says %d",
            manifest.engine, manifest.version, engine.publication_count, manifest.publications,
        )
    logger.debug(
        "loaded engine %s version %s from %s in %.2fs",
        manifest.engine, manifest.version, folder, time.monotonic() - started,
    )
    return engine
