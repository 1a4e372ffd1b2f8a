"""recsys: recommends scientific publications for a piece of text.

The core library: domain types, settings, errors, the Engine base class and its
registry, the archive format, the on-disk engine store and the in-process cache,
publication sources. It imports no web framework, no queue and no torch.

The names below are the public API for engine plugin authors (pinned by
tests/unit/test_public_api.py): the ``Engine`` base class and what it works with,
the errors an engine raises, the settings a plugin declares and reads, and the
registry that finds engines. The conformance suite and the stub engine live in
:mod:`recsys.testing`; everything else is reached through its module.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("recsys")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

# (after __version__: recsys.archive imports it from here)
from recsys.config import Field, PluginSettings, Settings
from recsys.domain import Evidence, Publication, Query, Recommendation
from recsys.engine import NULL_PROGRESS, Engine, EngineMetadata, LogProgress, Progress
from recsys.errors import (
    ConfigError,
    EngineLoadError,
    EngineNotFound,
    IncompatibleEngine,
    InvalidQuery,
    RecsysError,
    SourceError,
    UnknownPublication,
)
from recsys.registry import EngineRecord, Registry
from recsys.text import split_sentences

__all__ = [
    "NULL_PROGRESS",
    "ConfigError",
    "Engine",
    "EngineLoadError",
    "EngineMetadata",
    "EngineNotFound",
    "EngineRecord",
    "Evidence",
    "Field",
    "IncompatibleEngine",
    "InvalidQuery",
    "LogProgress",
    "PluginSettings",
    "Progress",
    "Publication",
    "Query",
    "Recommendation",
    "RecsysError",
    "Registry",
    "Settings",
    "SourceError",
    "UnknownPublication",
    "__version__",
    "split_sentences",
]
