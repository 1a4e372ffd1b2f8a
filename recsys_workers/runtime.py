"""The services of one worker process, created on first use.

``dramatiq recsys_workers --processes P`` forks P processes that each import
``recsys_workers``; nothing here opens a file, a connection or an engine until a
task, a heartbeat or the catch-up thread first asks for it (so after the fork, in
the process that uses it). Tests pass their own KV, registry and API client.

=================  =========================================================
``kv``             Redis (``RECSYS_RESULTS_URL``), or in memory in embedded mode
``registry``       the installed engine plugins
``store``          this machine's engines on disk (``<data_dir>/engines``)
``cache``          the engine this process serves, reloaded when the store changes
``api``            the API client (engine endpoints)
``sync``           download/verify/install of the API's engine
``heartbeats``     worker heartbeats; ``build_lock``: the cluster-wide build lock
=================  =========================================================

Two events let any thread nudge the background threads: :meth:`request_catch_up`
(ask the API now) and :meth:`request_heartbeat` (report a change now).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from recsys.archive import Limits
from recsys.cache import EngineCache, Loaded
from recsys.cluster import BuildLock, Heartbeats
from recsys.config import Settings
from recsys.engine import Engine
from recsys.kv import KV, MemoryKV, RedisKV
from recsys.load import load_engine
from recsys.registry import Registry
from recsys.store import EngineStore, Installed
from recsys_workers.api_client import ApiClient
from recsys_workers.sync import EngineSync

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Runtime:
    """Lazily created, thread-safe services of one worker process."""

    def __init__(
        self,
        settings: Settings,
        *,
        kv: KV | None = None,
        registry: Registry | None = None,
        api: ApiClient | None = None,
    ) -> None:
        self.settings = settings
        given = {"kv": kv, "registry": registry, "api": api}
        self._made: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        self._given = frozenset(self._made)
        self._lock = threading.RLock()
        self.catch_up_requested = threading.Event()
        self.heartbeat_requested = threading.Event()

    def _get(self, name: str, make: Callable[[], T]) -> T:
        try:
            return self._made[name]  # type: ignore[no-any-return]
        except KeyError:
            pass
        with self._lock:
            if name not in self._made:
                self._made[name] = make()
            return self._made[name]  # type: ignore[no-any-return]

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def kv(self) -> KV:
        def make() -> KV:
            if self.settings.embedded:
                return MemoryKV()
            return RedisKV(self.settings.results_url)

        return self._get("kv", make)

    @property
    def registry(self) -> Registry:
        return self._get("registry", Registry.discover)

    @property
    def store(self) -> EngineStore:
        def make() -> EngineStore:
            return EngineStore(
                self.data_dir / "engines",
                keep=self.settings.keep_engines,
                limits=Limits.from_settings(self.settings),
                engines=self.registry.usable(),
            )

        return self._get("store", make)

    @property
    def cache(self) -> EngineCache:
        return self._get("cache", lambda: EngineCache(self.store, self._load))

    def _load(self, installed: Installed) -> Engine:
        return load_engine(installed.path, registry=self.registry, settings=self.settings)

    @property
    def api(self) -> ApiClient:
        return self._get("api", lambda: ApiClient(self.settings.api_url, token=self.settings.api_token))

    @property
    def sync(self) -> EngineSync:
        return self._get(
            "sync",
            lambda: EngineSync(self.store, self.api, max_bytes=self.settings.archive_max_bytes),
        )

    @property
    def heartbeats(self) -> Heartbeats:
        return self._get("heartbeats", lambda: Heartbeats(self.kv, self.settings.heartbeat_interval))

    @property
    def build_lock(self) -> BuildLock:
        return self._get("build_lock", lambda: BuildLock(self.kv, self.settings.build_lock_ttl))

    def loaded(self) -> Loaded | None:
        """The engine this process has loaded, without touching the store."""
        cache = self._made.get("cache")
        return None if cache is None else cache.loaded

    def refresh(self) -> Loaded | None:
        """Load the store's current engine into this process if it changed, and report it."""
        before = self.loaded()
        loaded = self.cache.get()
        if loaded is not None and (before is None or (before.version, before.generation) != (
            loaded.version, loaded.generation
        )):
            logger.info("serving engine %s version %s (generation %d)",
                        loaded.manifest.engine, loaded.version, loaded.generation)
            self.request_heartbeat()
        return loaded

    def request_catch_up(self) -> None:
        self.catch_up_requested.set()

    def request_heartbeat(self) -> None:
        self.heartbeat_requested.set()

    def close(self) -> None:
        """Release what this runtime created (engine files, HTTP and Redis connections);
        services passed in by the caller stay open."""
        with self._lock:
            made = {name: value for name, value in self._made.items() if name not in self._given}
            self._made = {name: value for name, value in self._made.items() if name in self._given}
        for name in ("cache", "api", "kv"):
            service = made.get(name)
            if service is not None:
                try:
                    service.close()
                except Exception:
                    logger.warning("closing the worker's %s failed", name, exc_info=True)
