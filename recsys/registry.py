"""The engine registry: engine plugins found through the ``recsys.engines`` entry points.

Each entry point becomes an :class:`EngineRecord` (name, distribution, version,
and either the loaded class or the error that stopped it). A plugin that fails to
import, or whose object is not an :class:`~recsys.engine.Engine` subclass, is
recorded as broken with its cause; the others stay usable. Asking for a missing
engine names the installed ones.

``Registry.discover(load=False)`` lists entry points without importing them: the
API uses it, so that it never imports torch through a heavy plugin.

Plugins declare their settings under a second group, ``recsys.settings``: each entry
point names a :class:`~recsys.config.PluginSettings` in a module that imports nothing
heavy, so :func:`discover_plugin_settings` (which ``Settings.from_env`` calls) never
loads an engine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from recsys.config import PluginSettings
from recsys.engine import Engine
from recsys.errors import EngineLoadError, EngineNotFound

__all__ = [
    "GROUP",
    "SETTINGS_GROUP",
    "EngineRecord",
    "Registry",
    "discover_plugin_settings",
    "valid_engine_name",
]

GROUP = "recsys.engines"
#: Entry points naming each plugin's :class:`~recsys.config.PluginSettings`.
SETTINGS_GROUP = "recsys.settings"

logger = logging.getLogger(__name__)

_ENGINE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def valid_engine_name(name: str) -> bool:
    """Whether ``name`` has the form of an engine (entry-point) name."""
    return bool(_ENGINE_NAME.match(name))


@dataclass(frozen=True)
class EngineRecord:
    """One entry point of the ``recsys.engines`` group and what loading it gave."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    engine_class: type[Engine] | None = None
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.engine_class is not None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "broken"
        return "loaded" if self.loaded else "not loaded"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "entry_point": self.value,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
        }


def _load(entry_point: metadata.EntryPoint) -> tuple[type[Engine] | None, str | None]:
    try:
        obj = entry_point.load()
    except Exception as exc:  # a broken plugin must not hide the others
        logger.warning("engine plugin %r failed to load: %s: %s", entry_point.name, type(exc).__name__, exc)
        return None, f"import failed: {type(exc).__name__}: {exc}"
    if not (isinstance(obj, type) and issubclass(obj, Engine)):
        what = f"{obj!r} ({type(obj).__name__})"
        return None, f"{entry_point.value} is {what}, not a subclass of recsys.engine.Engine"
    if obj.name != entry_point.name:
        return None, (
            f"{entry_point.value} has name {obj.name!r} but is registered as {entry_point.name!r}; "
            "set the class attribute 'name' to the entry-point name"
        )
    return obj, None


class Registry:
    """The installed engines. Build it with :meth:`discover`, or from explicit
    entry points (tests) with ``Registry(entry_points)``."""

    def __init__(self, entry_points: Iterable[metadata.EntryPoint] = (), *, load: bool = True) -> None:
        records: dict[str, EngineRecord] = {}
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            dist_version = dist.version if dist is not None else None
            if ep.name in records:
                previous = records[ep.name]
                logger.warning(
                    "engine %r is registered twice (%s and %s); keeping the first",
                    ep.name, previous.distribution, dist_name,
                )
                continue
            if not valid_engine_name(ep.name):
                records[ep.name] = EngineRecord(
                    ep.name, ep.value, dist_name, dist_version,
                    error="invalid engine name: use lowercase letters, digits, '_' or '-'",
                )
                continue
            engine_class, error = _load(ep) if load else (None, None)
            records[ep.name] = EngineRecord(ep.name, ep.value, dist_name, dist_version, engine_class, error)
        self._records = dict(sorted(records.items()))

    @classmethod
    def discover(cls, *, load: bool = True, group: str = GROUP) -> Registry:
        """Every installed engine plugin; ``load=False`` lists them without importing."""
        return cls(metadata.entry_points(group=group), load=load)

    def records(self) -> list[EngineRecord]:
        return list(self._records.values())

    def names(self) -> list[str]:
        """Names of every registered engine, broken ones included."""
        return list(self._records)

    def usable(self) -> list[str]:
        """Names of the engines that loaded (or, unloaded, have no recorded error)."""
        return [r.name for r in self._records.values() if r.error is None]

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def get(self, name: str) -> type[Engine]:
        """The engine class registered as ``name``, loading it if needed.

        Raises EngineNotFound (naming the installed engines and how to install one)
        or EngineLoadError (with the plugin's error).
        """
        record = self._records.get(name)
        if record is None:
            installed = ", ".join(self.usable()) or "none"
            raise EngineNotFound(
                f"no engine named {name!r} is installed (installed: {installed}); install its plugin, "
                f"e.g. 'pip install -e plugins/recsys-engine-{name}', or set RECSYS_ENGINE to an installed one"
            )
        if record.error is not None:
            raise EngineLoadError(
                f"engine {name!r} from {record.distribution or record.value} is broken: {record.error}"
            )
        if record.engine_class is None:
            ep = metadata.EntryPoint(record.name, record.value, GROUP)
            engine_class, error = _load(ep)
            record = EngineRecord(
                record.name, record.value, record.distribution, record.version, engine_class, error
            )
            self._records[name] = record
            if engine_class is None:
                raise EngineLoadError(f"engine {name!r} from {record.distribution or record.value} is broken: {error}")
            return engine_class
        return record.engine_class

    def version_of(self, name: str) -> str | None:
        record = self._records.get(name)
        return record.version if record is not None else None


def discover_plugin_settings(
    entry_points: Iterable[metadata.EntryPoint] | None = None,
) -> tuple[PluginSettings[Any], ...]:
    """The settings every installed plugin declares (entry points of ``recsys.settings``),
    by plugin name. One that fails to load, is not a PluginSettings, or whose name is not
    its entry point's is logged and left out: its variables then count as unknown."""
    found: dict[str, PluginSettings[Any]] = {}
    for ep in metadata.entry_points(group=SETTINGS_GROUP) if entry_points is None else entry_points:
        try:
            declared = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others' settings
            logger.warning("the settings of plugin %r (%s) failed to load: %s: %s",
                           ep.name, ep.value, type(exc).__name__, exc)
            continue
        if not isinstance(declared, PluginSettings):
            logger.warning("the settings of plugin %r: %s is %r, not a recsys.config.PluginSettings; ignored",
                           ep.name, ep.value, type(declared).__name__)
        elif declared.name != ep.name:
            logger.warning("the settings of plugin %r: %s is named %r; the entry point must be named like it; "
                           "ignored", ep.name, ep.value, declared.name)
        elif ep.name in found:
            logger.warning("the settings of plugin %r are declared twice; keeping the first", ep.name)
        else:
            found[ep.name] = declared
    return tuple(found[name] for name in sorted(found))
