"""Errors raised by recsys.

Every error says what failed, which item, and what to do about it. Causes are
chained with ``raise ... from``. The hierarchy::

    RecsysError
     ├── ConfigError            a RECSYS_ setting is missing or malformed
     ├── EngineNotFound         no installed engine has that name
     ├── EngineLoadError        an engine plugin failed to import, is not an Engine,
     │    │                     or could not load its saved files
     │    └── IncompatibleEngine  saved with another model/backend than this process has
     ├── NoEngine               no engine has been built or installed yet
     ├── InvalidArchive         an engine archive failed verification
     ├── StoreError             the on-disk engine store could not be read or written
     │    └── LockTimeout       another process held the store's lock for too long
     ├── SourceError            the publications source failed or had no valid record
     ├── Unavailable            a shared service (Redis, RabbitMQ, the API) cannot be reached
     └── InvalidQuery           a recommendation query is malformed
          └── UnknownPublication  a query names a publication id the engine does not hold

Each error has a stable ``code`` (used in task results and HTTP bodies).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EngineLoadError",
    "EngineNotFound",
    "IncompatibleEngine",
    "InvalidArchive",
    "InvalidQuery",
    "LockTimeout",
    "NoEngine",
    "RecsysError",
    "SourceError",
    "StoreError",
    "Unavailable",
    "UnknownPublication",
]


class RecsysError(Exception):
    """Base class of every error raised by recsys."""

    code = "internal"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(RecsysError):
    """Raised when a setting is missing or malformed."""

    code = "config"


class EngineNotFound(RecsysError):
    """Raised when no installed engine has the requested name."""

    code = "engine_not_found"


class EngineLoadError(RecsysError):
    """Raised when an engine plugin or an engine's saved files cannot be loaded."""

    code = "engine_load"


class IncompatibleEngine(EngineLoadError):
    """Raised when saved engine files were made with another model or backend."""

    code = "incompatible_engine"


class NoEngine(RecsysError):
    """Raised when no engine has been built or installed yet."""

    code = "no_engine"


class InvalidArchive(RecsysError):
    """Raised when an engine archive fails verification."""

    code = "invalid_archive"


class StoreError(RecsysError):
    """Raised when the on-disk engine store cannot be read or written."""

    code = "store"


class LockTimeout(StoreError):
    """Raised when another process holds a lock for longer than we wait."""

    code = "lock_timeout"


class SourceError(RecsysError):
    """Raised when the publications source fails or yields no valid record."""

    code = "source"


class Unavailable(RecsysError):
    """Raised when a shared service (Redis, RabbitMQ, the API) cannot be reached."""

    code = "unavailable"


class InvalidQuery(RecsysError):
    """Raised when a recommendation query is malformed."""

    code = "bad_request"


class UnknownPublication(InvalidQuery):
    """Raised when a query names a publication id that the engine does not hold."""

    code = "unknown_publication"
