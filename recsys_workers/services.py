"""The dependencies of one worker process, typed and built explicitly.

``dramatiq recsys_workers --processes P`` starts P processes that each import
``recsys_workers``, as does the ``periodiq`` scheduler. :class:`WorkerServices` is
built at that import, so what would open a file, load plugins or an engine, or hold
connections is made on first use (a :class:`Lazy`), in the process that uses it.
Tests pass their own KV, registry and API client.

Built at once (none of them connects before its first command):

* ``settings``: the ``RECSYS_`` settings;
* ``kv``: Redis (``RECSYS_RESULTS_URL``), or in memory in embedded mode;
* ``heartbeats``: worker heartbeats; ``build_lock``: the cluster-wide build lock;
  ``rollouts``: this machine's rollout progress (``recsys:rollout:<host>``).

Made on first use:

* ``registry``: the installed engine plugins (imports them);
* ``api``: the API client (engine endpoints);
* ``store``: this machine's engines on disk (``<data_dir>/engines``, keeping
  ``RECSYS_KEEP_ENGINES`` versions; opening it creates the folder, cleans up after
  crashed installs and adopts a first-wave store's files into its blobs);
* ``cache``: the engine this process serves;
* ``rollout``: following the API's engine (:class:`recsys_workers.rollout.Rollout`).

Two events let any thread nudge the background threads (:mod:`recsys_workers.periodic`):
:meth:`~WorkerServices.request_catch_up` (ask the API now) and
:meth:`~WorkerServices.request_heartbeat` (report a change now).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from recsys.archive import Limits
from recsys.cache import EngineCache, Loaded
from recsys.cluster import BuildLock, Heartbeats, Rollouts
from recsys.config import Settings
from recsys.engine import Engine
from recsys.kv import KV, MemoryKV, RedisKV
from recsys.load import load_engine
from recsys.registry import Registry
from recsys.store import EngineStore, Installed
from recsys_workers.api_client import ApiClient
from recsys_workers.rollout import Rollout

if TYPE_CHECKING:
    from recsys_workers.metrics import WorkerMetrics

__all__ = ["Lazy", "WorkerServices"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value made by ``make`` on first :meth:`get`, once, whichever threads ask."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._made = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, value: T) -> Lazy[T]:
        """A value that is already made (given by the caller)."""
        lazy = cls(lambda: value)
        lazy._value, lazy._made = value, True
        return lazy

    def get(self) -> T:
        if not self._made:
            with self._lock:
                if not self._made:
                    self._value = self._make()
                    self._made = True
        return cast(T, self._value)

    def peek(self) -> T | None:
        """The value if it was made, without making it."""
        return self._value if self._made else None

    def take(self) -> T | None:
        """The value if it was made, forgetting it (the next :meth:`get` makes a new one)."""
        with self._lock:
            value, made = self._value, self._made
            self._value, self._made = None, False
        return value if made else None


class WorkerServices:
    """The dependencies of one worker process (see the module docstring). Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        kv: KV | None = None,
        registry: Registry | None = None,
        api: ApiClient | None = None,
    ) -> None:
        self.settings = settings
        self.kv: KV = kv if kv is not None else _open_kv(settings)
        self.heartbeats = Heartbeats(self.kv, settings.heartbeat_interval)
        self.build_lock = BuildLock(self.kv, settings.build_lock_ttl)
        self.rollouts = Rollouts(self.kv)
        self.catch_up_requested = threading.Event()
        self.heartbeat_requested = threading.Event()
        self._owns_kv = kv is None
        self._owns_api = api is None
        self._registry: Lazy[Registry] = Lazy.of(registry) if registry is not None else Lazy(Registry.discover)
        self._api: Lazy[ApiClient] = Lazy.of(api) if api is not None else Lazy(self._open_api)
        self._store: Lazy[EngineStore] = Lazy(self._open_store)
        self._cache: Lazy[EngineCache] = Lazy(lambda: EngineCache(self.store, self._load))
        self._rollout: Lazy[Rollout] = Lazy(self._open_rollout)
        #: This process's metrics, when its pool serves them (:mod:`recsys_workers.metrics`).
        self.metrics: WorkerMetrics | None = None

    @property
    def registry(self) -> Registry:
        return self._registry.get()

    @property
    def api(self) -> ApiClient:
        return self._api.get()

    @property
    def store(self) -> EngineStore:
        return self._store.get()

    @property
    def cache(self) -> EngineCache:
        return self._cache.get()

    @property
    def rollout(self) -> Rollout:
        return self._rollout.get()

    @property
    def store_opened(self) -> bool:
        """Whether this process has opened the engine store (plain tasks never do)."""
        return self._store.peek() is not None

    def loaded(self) -> Loaded | None:
        """The engine this process has loaded, without touching the store."""
        cache = self._cache.peek()
        return None if cache is None else cache.loaded

    def request_catch_up(self) -> None:
        self.catch_up_requested.set()

    def request_heartbeat(self) -> None:
        self.heartbeat_requested.set()

    def close(self) -> None:
        """Release what these services created (engine files, HTTP and Redis connections);
        services passed in by the caller stay open."""
        self._rollout.take()
        self._store.take()
        closing: list[tuple[str, Callable[[], None] | None]] = [("cache", _closer(self._cache.take()))]
        if self._owns_api:
            closing.append(("api", _closer(self._api.take())))
        if self._owns_kv:
            closing.append(("kv", self.kv.close))
        for name, close in closing:
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.warning("closing the worker's %s failed", name, exc_info=True)

    # -- factories -------------------------------------------------------------------

    def _open_api(self) -> ApiClient:
        return ApiClient(self.settings.api_url, token=self.settings.api_token)

    def _open_store(self) -> EngineStore:
        return EngineStore(
            self.settings.data_dir / "engines",
            keep=self.settings.keep_engines,
            limits=Limits.from_settings(self.settings),
            engines=self.registry.usable(),
        )

    def _load(self, installed: Installed) -> Engine:
        started = time.monotonic()
        engine = load_engine(installed.path, registry=self.registry, settings=self.settings)
        if self.metrics is not None:
            self.metrics.engine_loaded(installed.manifest.engine, time.monotonic() - started)
        return engine

    def _open_rollout(self) -> Rollout:
        return Rollout(
            self.store,
            self.api,
            self.cache,
            max_bytes=self.settings.archive_max_bytes,
            on_swap=self.request_heartbeat,
            on_behind=self.request_catch_up,
            rollouts=self.rollouts,
        )


def _open_kv(settings: Settings) -> KV:
    if settings.embedded:
        return MemoryKV()
    return RedisKV(settings.results_url)


def _closer(service: EngineCache | ApiClient | None) -> Callable[[], None] | None:
    return None if service is None else service.close
