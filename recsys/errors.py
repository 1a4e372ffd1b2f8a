"""Errors raised by recsys, and the one table of their codes.

Every error says what failed, which item, and what to do about it. Causes are
chained with ``raise ... from``. Every exception class of recsys, recsys_api,
recsys_workers and the engine plugins is one of these (a test walks the packages).
The hierarchy, with each class's ``code`` and HTTP ``status``::

    RecsysError                    internal             500  the base; a bare RecsysError is a server fault
     ├── InternalError             internal             500  an unexpected failure (logged with its traceback)
     │    └── InvalidEngineOption                            (recsys_workers.errors) an actor declared with an
     │                                                       unknown ``engine`` option, at worker start; also a
     │                                                       dramatiq MiddlewareError, which the broker lets through
     ├── ConfigError               config               500  a RECSYS_ setting is missing or malformed
     ├── EngineNotFound            engine_not_found     503  no installed engine has that name
     ├── EngineLoadError           engine_load          503  an engine plugin failed to import, is not an
     │    │                                                  Engine, or could not load its saved files
     │    └── IncompatibleEngine   incompatible_engine  503  saved with another model/backend than this process has
     ├── NoEngine                  no_engine            503  no engine has been built or installed yet
     ├── InvalidArchive            invalid_archive      400  an engine archive failed verification
     │    └── ArchiveTooLarge      too_large            413  an upload is larger than RECSYS_ARCHIVE_MAX_BYTES
     ├── ArchiveConflict           not_newer            409  an upload not newer than the current archive
     │    ├── NothingToRollBack    no_previous_version  409  a rollback with no previous version to roll back to
     │    ├── MissingFiles         missing_files        409  a thin archive leaves out files the API does not hold
     │    └── QualityGate          quality_gate         409  a new engine's quality metric is worse than the current
     │                                                       one's by more than RECSYS_QUALITY_TOLERANCE (not forced)
     ├── UnknownFile               unknown_file         404  a file asked for is no file of a kept engine version
     ├── UnknownChange             unknown_change       404  a publication change id the change log does not hold
     ├── ApplyRefused              apply_refused        409  a live-update apply could not be built, checked or uploaded
     ├── StoreError                store                503  an engine or archive store could not be read or written
     │    └── LockTimeout          lock_timeout         503  another process held the store's lock for too long
     ├── SourceError               source               500  the publications source failed or had no valid record
     │    ├── InvalidDocument                                a source file's JSON document does not parse
     │    └── InvalidRecord        invalid_record       500  one source record is not a usable publication
     ├── Unavailable               unavailable          503  Redis, RabbitMQ or the API cannot be reached
 │    └── FeatureUnavailable   feature_unavailable  503  a request uses a feature that a live worker pool
 │                                                       (an older version) lacks; names both
     ├── InvalidQuery              bad_request          400  a recommendation query is malformed
     │    └── UnknownPublication   unknown_publication  404  a query names a publication id the engine does not hold
     ├── BuildBusy                 build_running        409  a build is already queued or running
     │    └── BuildLockHeld                                  the cluster-wide build lock is held (names the holder)
     ├── BuildLockLost             build_lock_lost      409  a build lost its lock while building: nothing uploaded
     ├── UploadRefused             upload_refused       409  the API refused a built archive with a 4xx
     ├── InvalidTarget             invalid_target       500  an engine announcement (broadcast or GET /v1/engine)
     │                                                       that cannot be followed
     ├── TaskTimeout               timeout              504  a task ran past its time limit and was stopped
     │    └── TaskInterrupted                                the time limit struck while its engine was prepared
     └── WaitTimeout               wait_timeout         504  no worker answered within RECSYS_REQUEST_TIMEOUT

A class without a code of its own is, for clients, its parent's error. Each code
has one HTTP ``status`` and ``title``, whoever raises it: the API for its own errors
and for the error results of tasks (``{"error": {"code", "message"}}``, see
:mod:`recsys.protocol`) alike. :data:`ERRORS` is that table (code → the class that
introduces it); docs/api.md shows it with when each happens and what to do. A 503
comes with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ERRORS",
    "ArchiveConflict",
    "ApplyRefused",
    "ArchiveTooLarge",
    "BuildBusy",
    "BuildLockHeld",
    "BuildLockLost",
    "ConfigError",
    "EngineLoadError",
    "EngineNotFound",
    "FeatureUnavailable",
    "IncompatibleEngine",
    "InternalError",
    "QualityGate",
    "InvalidArchive",
    "InvalidDocument",
    "InvalidQuery",
    "InvalidRecord",
    "InvalidTarget",
    "LockTimeout",
    "MissingFiles",
    "NoEngine",
    "NothingToRollBack",
    "RecsysError",
    "SourceError",
    "StoreError",
    "TaskInterrupted",
    "TaskTimeout",
    "Unavailable",
    "UnknownChange",
    "UnknownFile",
    "UnknownPublication",
    "UploadRefused",
    "WaitTimeout",
    "error_class",
]


class RecsysError(Exception):
    """Base class of every error raised by recsys."""

    #: Stable name of the error, in task results and HTTP bodies.
    code: ClassVar[str] = "internal"
    #: HTTP status of the code.
    status: ClassVar[int] = 500
    #: Short HTTP title of the code.
    title: ClassVar[str] = "Internal error"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class InternalError(RecsysError):
    """Raised for an unexpected failure (a bug, or a fault nothing foresaw)."""

    code = "internal"
    status = 500
    title = "Internal error"


class ConfigError(RecsysError):
    """Raised when a setting is missing or malformed."""

    code = "config"
    status = 500
    title = "Server misconfigured"


class EngineNotFound(RecsysError):
    """Raised when no installed engine has the requested name."""

    code = "engine_not_found"
    status = 503
    title = "Engine not installed"


class EngineLoadError(RecsysError):
    """Raised when an engine plugin or an engine's saved files cannot be loaded."""

    code = "engine_load"
    status = 503
    title = "Engine not loaded"


class IncompatibleEngine(EngineLoadError):
    """Raised when saved engine files were made with another model or backend."""

    code = "incompatible_engine"
    status = 503
    title = "Engine not loaded"


class NoEngine(RecsysError):
    """Raised when no engine has been built or installed yet."""

    code = "no_engine"
    status = 503
    title = "No engine yet"


class InvalidArchive(RecsysError):
    """Raised when an engine archive fails verification."""

    code = "invalid_archive"
    status = 400
    title = "Invalid archive"


class ArchiveTooLarge(InvalidArchive):
    """Raised when an upload is larger than the archive size limit."""

    code = "too_large"
    status = 413
    title = "Archive too large"


class ArchiveConflict(RecsysError):
    """Raised when an upload is not newer than the current archive; the parent of every other
    409 of the engine endpoints, each with a code of its own."""

    code = "not_newer"
    status = 409
    title = "Not newer"


class NothingToRollBack(ArchiveConflict):
    """Raised when a rollback finds no previous engine version to roll back to."""

    code = "no_previous_version"
    status = 409
    title = "No previous version"


class QualityGate(ArchiveConflict):
    """Raised when an upload's quality comparison (manifest ``quality``) shows a metric worse
    than the current engine's by more than the tolerance; ``metric``, ``new``, ``current``
    and ``tolerance`` say which and by how much."""

    code = "quality_gate"
    status = 409
    title = "Quality gate"

    def __init__(self, message: str, *, metric: str = "", new: float = 0.0, current: float = 0.0,
                 tolerance: float = 0.0) -> None:
        super().__init__(message)
        self.metric, self.new, self.current, self.tolerance = metric, new, current, tolerance


class MissingFiles(ArchiveConflict):
    """Raised when a thin archive leaves out files the receiver does not hold.

    ``missing`` lists them as ``{"path", "sha256", "size"}``; the message names the first few.
    """

    code = "missing_files"
    status = 409
    title = "Missing files"

    def __init__(self, message: str, missing: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])


class UnknownFile(RecsysError):
    """Raised when a file the API is asked for is no file (or manifest) of a kept engine version."""

    code = "unknown_file"
    status = 404
    title = "Unknown file"


class UnknownChange(RecsysError):
    """Raised when a publication change id is not in the API's change log."""

    code = "unknown_change"
    status = 404
    title = "Unknown change"


class ApplyRefused(RecsysError):
    """Raised when a live-update apply could not be built, checked or uploaded (its changes are refused)."""

    code = "apply_refused"
    status = 409
    title = "Apply refused"


class StoreError(RecsysError):
    """Raised when an on-disk engine or archive store cannot be read or written."""

    code = "store"
    status = 503
    title = "Store unavailable"


class LockTimeout(StoreError):
    """Raised when another process holds a lock for longer than we wait."""

    code = "lock_timeout"
    status = 503
    title = "Store busy"


class SourceError(RecsysError):
    """Raised when the publications source fails or yields no valid record."""

    code = "source"
    status = 500
    title = "Source failed"


class InvalidDocument(SourceError):
    """Raised when a source file holds a JSON document that does not parse."""


class InvalidRecord(SourceError):
    """Raised by :meth:`recsys.domain.Publication.from_dict` for a record that cannot be used."""

    code = "invalid_record"
    status = 500
    title = "Invalid record"


class Unavailable(RecsysError):
    """Raised when a shared service (Redis, RabbitMQ, the API) cannot be reached."""

    code = "unavailable"
    status = 503
    title = "Service unavailable"


class FeatureUnavailable(Unavailable):
    """Raised when a request needs features that a live worker pool does not support yet
    (a pool of an older version, during an upgrade); ``features`` names them and
    ``pools`` the pools lacking them (``{"host", "recsys_version", "protocol", "workers",
    "lacking"}`` each)."""

    code = "feature_unavailable"
    status = 503
    title = "Feature unavailable"

    def __init__(self, message: str, *, features: list[str] | None = None,
                 pools: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.features = list(features or [])
        self.pools = list(pools or [])


class InvalidQuery(RecsysError):
    """Raised when a recommendation query is malformed."""

    code = "bad_request"
    status = 400
    title = "Invalid request"


class UnknownPublication(InvalidQuery):
    """Raised when a query names a publication id that the engine does not hold."""

    code = "unknown_publication"
    status = 404
    title = "Unknown publication"


class BuildBusy(RecsysError):
    """Raised when a build is already queued or running."""

    code = "build_running"
    status = 409
    title = "Build already running"


class BuildLockHeld(BuildBusy):
    """Raised by :meth:`recsys.cluster.BuildLock.acquire` when another build holds the lock."""

    def __init__(self, holder: dict[str, Any] | None) -> None:
        self.holder = holder or {}
        where = f"{self.holder.get('host', '?')} (pid {self.holder.get('pid', '?')})"
        since = self.holder.get("since", "?")
        super().__init__(f"a build is already running on {where} since {since}; wait for it to finish")


class BuildLockLost(RecsysError):
    """Raised when the build lock expired or was taken by another build during a build."""

    code = "build_lock_lost"
    status = 409
    title = "Build lock lost"


class UploadRefused(RecsysError):
    """Raised when the API refuses an uploaded archive with a 4xx (not 429)."""

    code = "upload_refused"
    status = 409
    title = "Upload refused"


class InvalidTarget(RecsysError):
    """Raised for an engine announcement (broadcast or API answer) that cannot be followed."""

    code = "invalid_target"
    status = 500
    title = "Invalid engine announcement"


class TaskTimeout(RecsysError):
    """Raised when a task runs past its time limit and is stopped."""

    code = "timeout"
    status = 504
    title = "Gateway timeout"


class TaskInterrupted(TaskTimeout):
    """Raised when the task's time limit struck while its engine was being prepared."""


class WaitTimeout(RecsysError):
    """Raised by :meth:`recsys_api.tasks.TaskClient.wait` when no result came within the timeout."""

    code = "wait_timeout"
    status = 504
    title = "Gateway timeout"

    def __init__(self, task_id: str, seconds: int) -> None:
        super().__init__(
            f"no worker answered within {seconds} s; the task is still queued or running: "
            f"poll /v1/tasks/{task_id} for its result"
        )
        self.task_id = task_id
        self.seconds = seconds


#: The one table: each code, with the class that introduces it (and so its status
#: and title), in the order docs/api.md lists them.
ERRORS: Mapping[str, type[RecsysError]] = {
    cls.code: cls
    for cls in (
        InvalidQuery,
        InvalidArchive,
        UnknownPublication,
        UnknownFile,
        UnknownChange,
        ArchiveConflict,
        NothingToRollBack,
        MissingFiles,
        QualityGate,
        BuildBusy,
        BuildLockLost,
        UploadRefused,
        ApplyRefused,
        ArchiveTooLarge,
        InternalError,
        ConfigError,
        SourceError,
        InvalidRecord,
        InvalidTarget,
        NoEngine,
        EngineNotFound,
        EngineLoadError,
        IncompatibleEngine,
        Unavailable,
        FeatureUnavailable,
        StoreError,
        LockTimeout,
        TaskTimeout,
        WaitTimeout,
    )
}


def error_class(code: str) -> type[RecsysError]:
    """The class of ``code`` in :data:`ERRORS`; InternalError (500) for a code this
    version does not know (e.g. from a newer worker)."""
    return ERRORS.get(code, InternalError)
