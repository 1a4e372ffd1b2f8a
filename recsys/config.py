"""Settings: one frozen object read from the environment (and an optional ``.env``).

Every variable is prefixed ``RECSYS_``. :data:`FIELDS` is the single table of the
core's settings (name, type, default, one-line help); ``.env.example`` lists the same
variables and a unit test keeps the two in step. Read the settings once at start
(``Settings.from_env()``) and pass the object down; nothing else reads ``os.environ``.

A plugin declares its own settings (datasette's per-plugin configuration is the
model): a :class:`PluginSettings` names the plugin, whose variables are all
``RECSYS_<NAME>_...``, the :class:`Field` of each, and the frozen class they fill. It
is published under the entry-point group ``recsys.settings``
(:func:`recsys.registry.discover_plugin_settings`), in a module that imports nothing
heavy, and read back typed with ``settings.plugin(DECLARATION)``. ``from_env`` checks
every declared plugin variable at start, and warns about a ``RECSYS_`` variable that
neither the core nor an installed plugin declares (most likely a typo).

A bad value fails at start with an error naming the variable, the value and what
was expected::

    RECSYS_REQUEST_TIMEOUT='abc' is not valid: expected a whole number of seconds from 1 to 600

Parsers take the variable's text and return the typed value, or raise ``ValueError``
whose message says what is expected: :func:`parse_text`, :func:`parse_bool`,
:func:`parse_path`, :func:`parse_name`, :func:`parse_cron`, and the factories
:func:`optional`, :func:`int_range`, :func:`float_range`, :func:`one_of`, :func:`url_of`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload
from urllib.parse import urlsplit

from recsys.errors import ConfigError

__all__ = [
    "FIELDS",
    "PREFIX",
    "Field",
    "Parser",
    "PluginSettings",
    "Settings",
    "float_range",
    "int_range",
    "one_of",
    "optional",
    "parse_bool",
    "parse_cron",
    "parse_name",
    "parse_path",
    "parse_text",
    "read_env_file",
    "url_of",
]

PREFIX = "RECSYS_"

logger = logging.getLogger(__name__)

#: Turns a variable's text into its value; raises ValueError saying what is expected.
Parser = Callable[[str], Any]

T = TypeVar("T")


@dataclass(frozen=True)
class Field:
    """One setting: its attribute name, parser, default (as written in .env) and help.

    ``aliases`` are other variable names read for the same setting (documented, for
    names operators already use). ``prefix`` is ``RECSYS_`` for the core; a
    :class:`PluginSettings` sets its own on its fields.
    """

    attr: str
    parse: Parser
    default: str
    help: str
    secret: bool = False
    aliases: tuple[str, ...] = ()
    prefix: str = PREFIX

    @property
    def env(self) -> str:
        return self.prefix + self.attr.upper()

    @property
    def names(self) -> tuple[str, ...]:
        """The variable and its aliases."""
        return (self.env, *self.aliases)

    def read(self, environ: Mapping[str, str]) -> Any:
        """This setting's value in ``environ`` (its default when unset).

        Raises ConfigError naming the variable, the value and what is expected, or
        naming both variables when the setting and an alias disagree.
        """
        given = [(name, environ[name]) for name in self.names if name in environ]
        if len({value for _, value in given}) > 1:
            shown = " and ".join(f"{name}={self._shown(value)!r}" for name, value in given)
            raise ConfigError(f"{shown} are set to different values for one setting: set only {self.env}")
        name, raw = given[0] if given else (self.env, self.default)
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={self._shown(raw)!r} is not valid: {exc}") from None

    def _shown(self, raw: str) -> str:
        return "***" if self.secret else raw


# -- parsers -----------------------------------------------------------------


def parse_text(value: str) -> str:
    """The text, stripped."""
    return value.strip()


def optional(parse: Parser) -> Parser:
    """``parse``, or None for an empty value."""

    def parser(value: str) -> Any:
        value = value.strip()
        return None if value == "" else parse(value)

    return parser


def int_range(lo: int, hi: int, unit: str = "") -> Parser:
    """A whole number from ``lo`` to ``hi``; ``unit`` is said in the message (" of seconds")."""

    def parser(value: str) -> int:
        what = f"a whole number{unit} from {lo} to {hi}"
        try:
            number = int(value.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"expected {what}") from None
        if not lo <= number <= hi:
            raise ValueError(f"expected {what}")
        return number

    return parser


def float_range(lo: float, hi: float, unit: str = "") -> Parser:
    """A number from ``lo`` to ``hi``."""

    def parser(value: str) -> float:
        what = f"a number{unit} from {lo:g} to {hi:g}"
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"expected {what}") from None
        if not lo <= number <= hi:
            raise ValueError(f"expected {what}")
        return number

    return parser


def parse_bool(value: str) -> bool:
    """true/false, 1/0, yes/no, on/off; empty is false."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false (also 1/0, yes/no, on/off)")


def url_of(*schemes: str) -> Parser:
    """A URL with one of ``schemes``."""

    def parser(value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value

    return parser


def parse_path(value: str) -> Path:
    """A filesystem path (``~`` expanded)."""
    return Path(value.strip()).expanduser()


def one_of(*choices: str) -> Parser:
    """One of ``choices`` (case-insensitive, returned in lowercase)."""

    def parser(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value

    return parser


_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def parse_name(value: str) -> str:
    """A name of lowercase letters, digits, '.', '_' or '-' (a queue, an engine)."""
    value = value.strip()
    if not _NAME.match(value):
        raise ValueError("expected a name of lowercase letters, digits, '.', '_' or '-' (starting with a letter)")
    return value


def _source(value: str) -> str | None:
    value = value.strip()
    if value == "":
        return None
    if "://" in value and urlsplit(value).scheme not in {"http", "https", "file"}:
        raise ValueError("expected an http(s):// URL of the publications backend or a file path")
    return value


_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMED = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def parse_cron(value: str) -> str:
    """Check a five-field cron expression (or @daily etc.) and return it stripped."""
    spec = value.strip()
    if spec in _CRON_NAMED:
        return spec
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError("expected a cron expression of five fields 'minute hour day month weekday' or @daily")
    for index, (field, (lo, hi)) in enumerate(zip(fields, _CRON_RANGES, strict=True)):
        if index == 4:
            for number, day in enumerate(_DOW):
                field = field.lower().replace(day, str(number))
        for part in field.split(","):
            rng, _, step = part.partition("/")
            if step and not step.isdigit():
                raise ValueError(f"bad step in cron field {index + 1} ({part!r})")
            if rng == "*":
                continue
            start, _, end = rng.partition("-")
            bounds = [start] + ([end] if end else [])
            if not all(b.isdigit() and lo <= int(b) <= hi for b in bounds):
                raise ValueError(f"cron field {index + 1} ({part!r}) must be *, a number or a range within {lo}-{hi}")
    return spec


def _cron(value: str) -> str:
    return "" if value.strip() == "" else parse_cron(value)


GIB = 1024**3
MIB = 1024**2

#: Every setting of the core, in the order of ``.env.example`` (plugins declare their own).
FIELDS: tuple[Field, ...] = (
    # -- services
    Field("broker_url", optional(url_of("amqp", "amqps")), "",
          "RabbitMQ URL amqp://user:pass@host:5672/vhost; empty: embedded one-process mode", secret=True),
    Field("broker_management_url", optional(url_of("http", "https")), "",
          "RabbitMQ management API http://user:pass@host:15672 for the console's queue counts (credentials "
          "default to the broker URL's); empty: ready counts over AMQP", secret=True),
    Field("results_url", url_of("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0",
          "Redis URL for task results, locks and worker heartbeats", secret=True),
    Field("api_url", url_of("http", "https"), "http://127.0.0.1:8000",
          "where workers reach the API (archive upload/download, version checks)"),
    Field("api_token", optional(parse_text), "",
          "bearer token for builds, uploads and rollbacks; empty: those endpoints are refused", secret=True),
    # -- disk and engines
    Field("data_dir", parse_path, "./recsys-data",
          "this process's disk: the API's archive store, or a worker machine's engine store"),
    Field("engine", parse_name, "annoy", "engine plugin (entry point in recsys.engines) used for builds"),
    Field("start_engine", optional(parse_path), "",
          "an engine archive the API installs at start when its store is empty"),
    Field("source", _source, "",
          "publications source: http(s):// URL of the backend, or a JSON/JSONL(.gz) file; empty: demo corpus"),
    Field("rebuild_cron", _cron, "", "cron expression for scheduled rebuilds, e.g. '0 3 * * *'; empty: none"),
    Field("keep_engines", int_range(2, 100), "3",
          "engine versions kept on each disk (the current one and previous ones for rollback); files no kept "
          "version uses are deleted"),
    Field("quality_tolerance", float_range(0.0, 1.0), "0.02",
          "a new engine whose quality metric is worse than the current engine's by more than this (absolute) is "
          "refused (409 quality_gate) unless forced"),
    Field("cache_dir", optional(parse_path), "",
          "cache of what engine plugins derive (exported models, sentence vectors); empty: <data_dir>/cache"),
    # -- queues and timing
    Field("request_queue", parse_name, "recsys.requests", "queue of recommendation tasks"),
    Field("build_queue", parse_name, "recsys.builds",
          "queue of engine builds (kept apart so builds never block requests)"),
    Field("broadcast_exchange", parse_name, "recsys.broadcast", "fanout exchange of engine_updated broadcasts"),
    Field("request_timeout", int_range(1, 600, " of seconds"), "30",
          "how long the API waits for a recommendation before answering 504"),
    Field("result_ttl", int_range(10, 7 * 86400, " of seconds"), "600", "how long task results are kept"),
    Field("catchup_interval", int_range(1, 86400, " of seconds"), "60",
          "how often a worker asks the API for its current engine, besides broadcasts"),
    Field("heartbeat_interval", int_range(1, 3600, " of seconds"), "5",
          "how often a worker process records its heartbeat (it expires after three intervals)"),
    Field("build_lock_ttl", int_range(10, 86400, " of seconds"), "60",
          "expiry of the cluster-wide build lock; its holder renews it while it builds"),
    Field("build_time_limit", int_range(60, 7 * 86400, " of seconds"), "21600",
          "a build running longer than this is stopped"),
    Field("changes_resend_interval", int_range(1, 86400, " of seconds"), "30",
          "how often the API re-sends the apply of pushed publication changes still pending (and once at start)"),
    # -- limits
    Field("max_body_bytes", int_range(1024, 64 * MIB, " of bytes"), str(MIB),
          "largest JSON request body the API reads"),
    Field("push_max_bytes", int_range(1024, GIB, " of bytes"), str(32 * MIB),
          "largest body of POST /v1/publications (up to 1,000 upserts and 1,000 deletes)"),
    Field("archive_max_bytes", int_range(1024, 64 * GIB, " of bytes"), str(4 * GIB), "largest engine archive accepted"),
    Field("archive_max_file_bytes", int_range(1024, 64 * GIB, " of bytes"), str(3 * GIB),
          "largest single file inside an engine archive"),
    Field("archive_max_entries", int_range(2, 100_000), "1000", "most files inside an engine archive"),
    Field("archive_max_ratio", int_range(1, 100_000), "200",
          "largest uncompressed/compressed size ratio of one archive member (zip-bomb guard)"),
    Field("source_timeout", float_range(0.1, 3600, " of seconds"), "30",
          "timeout of one request to the publications backend"),
    Field("source_retries", int_range(0, 100), "5", "retries of a timed-out or 5xx page of the publications backend"),
    # -- monitoring
    Field("worker_metrics_port", int_range(0, 65535), "9191",
          "port of a worker pool's Prometheus metrics (one per pool on a host); 0: none"),
    Field("worker_metrics_host", parse_text, "0.0.0.0", "address a worker pool's metrics server binds"),
    # -- process
    Field("log_level", one_of("debug", "info", "warning", "error"), "info", "log level of every recsys process"),
)

_BY_ENV = {field.env: field for field in FIELDS}


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``KEY=value`` lines (``#`` comments, optional quotes, ``export`` prefix)."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {str(path)!r}: {exc}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_ATTR = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class PluginSettings(Generic[T]):
    """The settings a plugin declares: ``RECSYS_<NAME>_<ATTR>`` for each of ``fields``,
    read into ``factory(**values)`` (a frozen dataclass whose defaults match the fields').

    Publish it under the entry-point group ``recsys.settings`` with the plugin's name,
    from a module that imports nothing heavy; read it with ``settings.plugin(it)``::

        @dataclass(frozen=True)
        class MineSettings:
            depth: int = 3

        SETTINGS = PluginSettings("mine", (Field("depth", int_range(1, 10), "3", "levels searched"),),
                                  MineSettings, title="my engine")
    """

    name: str
    fields: tuple[Field, ...]
    factory: Callable[..., T]
    title: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not _PLUGIN_NAME.match(self.name):
            problems.append("its name must be lowercase letters, digits, '_' or '-' (the entry-point name)")
        attrs = [field.attr for field in self.fields]
        problems += [f"setting {a!r} is declared twice" for a in sorted({a for a in attrs if attrs.count(a) > 1})]
        problems += [f"setting {a!r} must be a lowercase identifier" for a in attrs if not _ATTR.match(a)]
        for field in self.fields:
            problems += [
                f"alias {alias!r} of {field.attr!r} must start with {PREFIX} and not be a setting of the core"
                for alias in field.aliases if not alias.startswith(PREFIX) or alias in _BY_ENV
            ]
        if problems:
            raise ValueError(f"the settings of plugin {self.name!r} are malformed: {'; '.join(problems)}")
        bound = tuple(dataclasses.replace(field, prefix=self.prefix) for field in self.fields)
        object.__setattr__(self, "fields", bound)

    @property
    def prefix(self) -> str:
        """``RECSYS_<NAME>_``: every variable of the plugin starts with it."""
        return f"{PREFIX}{self.name.upper().replace('-', '_')}_"

    @property
    def names(self) -> frozenset[str]:
        """Every variable the plugin reads, aliases included."""
        return frozenset(name for field in self.fields for name in field.names)

    def parse(self, environ: Mapping[str, str]) -> T:
        """The plugin's settings from ``environ`` (defaults for unset variables).

        Raises ConfigError naming the variable, its value and what is expected.
        """
        return self.factory(**{field.attr: field.read(environ) for field in self.fields})

    def defaults(self) -> T:
        return self.parse({})


def _env_text(value: Any) -> str:
    """A typed value as its variable's text (the inverse of the parsers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge(sources: Iterable[Mapping[str, str]], groups: Iterable[tuple[str, ...]]) -> dict[str, str]:
    """Later sources win; for a setting with aliases, the source that sets any of its
    names sets all of them (so the environment's ``RECSYS_MODEL`` beats the file's
    canonical name, and vice versa)."""
    groups = [group for group in groups if len(group) > 1]
    merged: dict[str, str] = {}
    for source in sources:
        for group in groups:
            if any(name in source for name in group):
                for name in group:
                    merged.pop(name, None)
        merged.update(source)
    return merged


@dataclass(frozen=True)
class Settings:
    """Every RECSYS_ setting of the core, typed, and the plugins' settings through
    :meth:`plugin`. Build it with :meth:`from_env`; tests may call ``Settings(...)``,
    ``settings.replace(...)`` or ``settings.with_plugin(...)`` directly."""

    broker_url: str | None = None
    broker_management_url: str | None = dataclasses.field(default=None, repr=False)
    results_url: str = "redis://127.0.0.1:6379/0"
    api_url: str = "http://127.0.0.1:8000"
    api_token: str | None = dataclasses.field(default=None, repr=False)
    data_dir: Path = Path("./recsys-data")
    engine: str = "annoy"
    start_engine: Path | None = None
    source: str | None = None
    rebuild_cron: str = ""
    keep_engines: int = 3
    quality_tolerance: float = 0.02
    cache_dir: Path | None = None
    request_queue: str = "recsys.requests"
    build_queue: str = "recsys.builds"
    broadcast_exchange: str = "recsys.broadcast"
    request_timeout: int = 30
    result_ttl: int = 600
    catchup_interval: int = 60
    heartbeat_interval: int = 5
    build_lock_ttl: int = 60
    build_time_limit: int = 21600
    changes_resend_interval: int = 30
    max_body_bytes: int = MIB
    push_max_bytes: int = 32 * MIB
    archive_max_bytes: int = 4 * GIB
    archive_max_file_bytes: int = 3 * GIB
    archive_max_entries: int = 1000
    archive_max_ratio: int = 200
    source_timeout: float = 30.0
    source_retries: int = 5
    worker_metrics_port: int = 9191
    worker_metrics_host: str = "0.0.0.0"
    log_level: str = "info"
    #: Every other ``RECSYS_`` variable as read (plugin settings): see :meth:`plugin`.
    extra_environ: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    #: The plugin settings found when these settings were read (``recsys settings`` lists them).
    plugins: tuple[PluginSettings[Any], ...] = dataclasses.field(default=(), compare=False, repr=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
        plugins: Iterable[PluginSettings[Any]] | None = None,
    ) -> Settings:
        """Read every setting; the environment wins over the ``.env`` file.

        ``plugins``: the plugins' declared settings, each checked here; None: those of
        the installed plugins (entry points ``recsys.settings``). Raises ConfigError
        naming the variable, its value and what is expected; an unknown ``RECSYS_``
        variable is logged as a warning (most likely a typo).
        """
        if plugins is None:
            from recsys.registry import discover_plugin_settings

            plugins = discover_plugin_settings()
        declared = tuple(plugins)
        fields = [*FIELDS, *(field for plugin in declared for field in plugin.fields)]
        sources = [read_env_file(env_file)] if env_file is not None else []
        sources.append(dict(os.environ if environ is None else environ))
        merged = _merge(sources, (field.names for field in fields))
        known = {name for field in fields for name in field.names}
        unknown = sorted(k for k in merged if k.startswith(PREFIX) and k not in known)
        if unknown:
            _warn_unknown(unknown, known, declared)
        values = {field.attr: field.read(merged) for field in FIELDS}
        extra = tuple(sorted((k, v) for k, v in merged.items() if k.startswith(PREFIX) and k not in _BY_ENV))
        settings = cls(**values, extra_environ=extra, plugins=declared)
        for plugin in declared:
            settings.plugin(plugin)  # a bad plugin setting fails at start too
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @overload
    def plugin(self, declaration: PluginSettings[T]) -> T: ...

    @overload
    def plugin(self, declaration: str) -> Any: ...

    def plugin(self, declaration: PluginSettings[T] | str) -> T | Any:
        """A plugin's settings, typed: ``settings.plugin(ANNOY).model``.

        With a plugin's name, the declaration found by :meth:`from_env`. Unset
        variables (and settings made with ``Settings(...)``) give the defaults.
        """
        if isinstance(declaration, str):
            declaration = self._declaration(declaration)
        return declaration.parse(dict(self.extra_environ))

    def with_plugin(self, declaration: PluginSettings[Any], **changes: Any) -> Settings:
        """A copy with some of a plugin's settings changed (typed values, by attribute)::

            settings.with_plugin(ANNOY, trees=10)
        """
        fields = {field.attr: field for field in declaration.fields}
        environ = dict(self.extra_environ)
        for attr, value in changes.items():
            if attr not in fields:
                raise TypeError(
                    f"plugin {declaration.name!r} has no setting {attr!r}; its settings: {', '.join(fields)}"
                )
            for name in fields[attr].names:
                environ.pop(name, None)
            environ[fields[attr].env] = _env_text(value)
        declaration.parse(environ)
        plugins = self.plugins if declaration in self.plugins else (*self.plugins, declaration)
        return dataclasses.replace(self, extra_environ=tuple(sorted(environ.items())), plugins=plugins)

    def environ(self) -> dict[str, str]:
        """``RECSYS_*`` variables that make :meth:`from_env` read these settings back."""
        environ = {field.env: _env_text(getattr(self, field.attr)) for field in FIELDS}
        environ.update(self.extra_environ)
        return environ

    def _declaration(self, name: str) -> PluginSettings[Any]:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        declared = ", ".join(p.name for p in self.plugins) or "none"
        raise ConfigError(
            f"no installed plugin declares settings named {name!r} (declared: {declared}); "
            "install the plugin, or check its entry point in the recsys.settings group"
        )

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the one-process mode."""
        return self.broker_url is None

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    def redacted(self) -> dict[str, Any]:
        """The core's settings as plain values with secrets hidden, for logs and `recsys settings`."""
        return {field.env: _plain(field, getattr(self, field.attr)) for field in FIELDS}

    def redacted_plugin(self, declaration: PluginSettings[Any]) -> dict[str, Any]:
        """A plugin's settings as plain values with secrets hidden."""
        values = self.plugin(declaration)
        return {field.env: _plain(field, getattr(values, field.attr)) for field in declaration.fields}


def _plain(field: Field, value: Any) -> Any:
    if field.secret and value:
        value = _redact(str(value))
    return str(value) if isinstance(value, Path) else value


def _warn_unknown(unknown: list[str], known: set[str], plugins: tuple[PluginSettings[Any], ...]) -> None:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    installed = ", ".join(p.name for p in plugins) or "none"
    logger.warning(
        "ignoring unknown setting(s) %s: neither recsys nor an installed plugin's settings (plugins with "
        "settings: %s) have that name; a typo, or a plugin not installed here? 'recsys settings' lists them all",
        ", ".join(hints), installed,
    )


def _redact(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme and parts.password:
        return value.replace(f":{parts.password}@", ":***@", 1)
    if parts.scheme:
        return value
    return "***"
