"""The engine cache: the engine one process serves, reloaded when its store changes.

``EngineCache.get()`` is called before every engine task. It compares the store's
CURRENT with what is loaded: the same version (even at a new generation, e.g. a
rollback to what is loaded) needs no reload; a different version is loaded by one
thread while the other threads keep serving the old engine; then the new one is
swapped in. The old engine is dropped, not closed: a task may still be using it,
and it is released when the last reference goes.

When nothing is loaded yet, every caller waits for the first load. A loader
failure is logged and raised to the caller that ran the loader; the old engine
stays in service for everyone else, and the failing version is not tried again
for ``retry_after`` seconds (callers with no engine to fall back on get an
EngineLoadError naming the failure meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from recsys.archive import Manifest
from recsys.engine import Engine
from recsys.errors import EngineLoadError
from recsys.store import EngineStore, Installed

__all__ = ["EngineCache", "Loaded"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    engine: Engine
    version: str
    generation: int
    manifest: Manifest


@dataclass(frozen=True)
class _Failure:
    version: str
    error: BaseException
    at: float


class EngineCache:
    """The engine of one process (see the module docstring).

    ``loader`` turns the store's current engine into an Engine (typically
    ``lambda installed: recsys.load.load_engine(installed.path, registry=..., settings=...)``).
    ``retry_after``: seconds before a version that failed to load is tried again.
    ``clock``: a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        store: EngineStore,
        loader: Callable[[Installed], Engine],
        *,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._loader = loader
        self._retry_after = retry_after
        self._clock = clock
        self._loaded: Loaded | None = None
        self._failure: _Failure | None = None
        self._load_lock = threading.Lock()  # one loader at a time
        self._state_lock = threading.Lock()  # guards _loaded and _failure
        self._closed = False

    def get(self) -> Loaded | None:
        """The engine to serve now: reloaded if the store holds another version;
        None when the store has no engine. Thread-safe.

        Raises what the loader raised (to the caller that ran it), or EngineLoadError
        while a failed version waits for its retry and nothing else is loaded.
        """
        self._check_open()
        installed = self._store.current()
        if installed is None:
            return None
        loaded = self._fresh(installed)
        if loaded is not None:
            return loaded
        old = self._loaded
        if old is not None:
            if self._recent_failure(installed.version) is not None:
                return old  # keep serving the old engine until the retry is due
            if not self._load_lock.acquire(blocking=False):
                return old  # another thread is loading the new version
        else:
            self._load_lock.acquire()  # nothing to serve: wait for the load
        try:
            return self._load(installed)
        finally:
            self._load_lock.release()

    @property
    def loaded(self) -> Loaded | None:
        """What is loaded, without looking at the store."""
        return self._loaded

    def close(self) -> None:
        """Drop the loaded engine and close it; ``get()`` fails afterwards."""
        with self._state_lock:
            self._closed = True
            loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.engine.close()

    # -- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this EngineCache is closed")

    def _fresh(self, installed: Installed) -> Loaded | None:
        """The loaded engine when it is ``installed``'s version (with its generation)."""
        with self._state_lock:
            loaded = self._loaded
            if loaded is None or loaded.version != installed.version:
                return None
            if loaded.generation != installed.generation:
                logger.info(
                    "engine version %s is now generation %d (was %d); no reload needed",
                    loaded.version, installed.generation, loaded.generation,
                )
                loaded = self._loaded = replace(loaded, generation=installed.generation)
            return loaded

    def _recent_failure(self, version: str) -> _Failure | None:
        failure = self._failure
        if failure is None or failure.version != version:
            return None
        if self._clock() - failure.at >= self._retry_after:
            return None
        return failure

    def _load(self, installed: Installed) -> Loaded | None:
        """Load ``installed`` (the load lock is held) unless another thread just did."""
        installed = self._store.current() or installed
        loaded = self._fresh(installed)
        if loaded is not None:
            return loaded
        failure = self._recent_failure(installed.version)
        if failure is not None:
            if self._loaded is not None:
                return self._loaded
            wait = self._retry_after - (self._clock() - failure.at)
            raise EngineLoadError(
                f"engine version {installed.version} failed to load: {failure.error}; "
                f"the next try is in {max(wait, 0):.0f}s"
            ) from failure.error
        started = time.monotonic()
        logger.info(
            "loading engine version %s (generation %d) from %s", installed.version, installed.generation, installed.path
        )
        try:
            engine = self._loader(installed)
        except Exception as exc:
            with self._state_lock:
                self._failure = _Failure(installed.version, exc, self._clock())
            serving = f"; still serving version {self._loaded.version}" if self._loaded is not None else ""
            logger.exception("engine version %s failed to load%s", installed.version, serving)
            raise
        new = Loaded(engine, installed.version, installed.generation, installed.manifest)
        with self._state_lock:
            if self._closed:
                engine.close()
                raise RuntimeError("this EngineCache was closed while it loaded an engine")
            old, self._loaded, self._failure = self._loaded, new, None
        logger.info(
            "loaded engine %s version %s (generation %d) in %.2fs%s",
            installed.manifest.engine, installed.version, installed.generation, time.monotonic() - started,
            f", replacing version {old.version}" if old is not None else "",
        )
        return new
