"""The engine cache: the engine one process serves, reloaded when its store changes.

INTERFACE STUB — implementation pending (see the docstrings for the contract).

``EngineCache.get()`` is called before every engine task. It compares the store's
CURRENT with what is loaded: the same version (even at a new generation, e.g. a
rollback to what is loaded) needs no reload; a different version is loaded by one
thread while the other threads keep serving the old engine; then the new one is
swapped in and the old one closed once no task uses it any more (or simply dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recsys.archive import Manifest
from recsys.engine import Engine
from recsys.store import EngineStore, Installed

__all__ = ["EngineCache", "Loaded"]


@dataclass(frozen=True)
class Loaded:
    engine: Engine
    version: str
    generation: int
    manifest: Manifest


class EngineCache:
    def __init__(self, store: EngineStore, loader: Callable[[Installed], Engine]) -> None:
        raise NotImplementedError

    def get(self) -> Loaded | None:
        """The engine to serve now: reloaded if the store holds another version;
        None when the store has no engine. Thread-safe."""
        raise NotImplementedError

    @property
    def loaded(self) -> Loaded | None:
        """What is loaded, without looking at the store."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
