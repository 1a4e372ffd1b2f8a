"""Settings: one frozen object read from the environment (and an optional ``.env``).

Every variable is prefixed ``RECSYS_``. :data:`FIELDS` is the single table of
settings (name, type, default, one-line help); ``.env.example`` lists the same
variables and a unit test keeps the two in step. Read the settings once at start
(``Settings.from_env()``) and pass the object down; nothing else reads ``os.environ``.

A bad value fails at start with an error naming the variable, the value and what
was expected::

    RECSYS_REQUEST_TIMEOUT='abc' is not valid: expected a whole number of seconds from 1 to 600
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recsys.errors import ConfigError

__all__ = ["FIELDS", "PREFIX", "Field", "Settings", "parse_cron", "read_env_file"]

PREFIX = "RECSYS_"

logger = logging.getLogger(__name__)

Parser = Callable[[str], Any]


class _Invalid(ValueError):
    """Raised by a parser; the message says what is expected."""


@dataclass(frozen=True)
class Field:
    """One setting: its attribute name, parser, default (as written in .env) and help."""

    attr: str
    parse: Parser
    default: str
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return PREFIX + self.attr.upper()


# -- parsers -----------------------------------------------------------------


def _text(value: str) -> str:
    return value.strip()


def _optional(parse: Parser) -> Parser:
    def parser(value: str) -> Any:
        value = value.strip()
        return None if value == "" else parse(value)

    return parser


def _int(lo: int, hi: int, unit: str = "") -> Parser:
    def parser(value: str) -> int:
        what = f"a whole number{unit} from {lo} to {hi}"
        try:
            number = int(value.strip().replace("_", ""))
        except ValueError:
            raise _Invalid(f"expected {what}") from None
        if not lo <= number <= hi:
            raise _Invalid(f"expected {what}")
        return number

    return parser


def _float(lo: float, hi: float, unit: str = "") -> Parser:
    def parser(value: str) -> float:
        what = f"a number{unit} from {lo:g} to {hi:g}"
        try:
            number = float(value.strip())
        except ValueError:
            raise _Invalid(f"expected {what}") from None
        if not lo <= number <= hi:
            raise _Invalid(f"expected {what}")
        return number

    return parser


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise _Invalid("expected true or false (also 1/0, yes/no, on/off)")


def _url(*schemes: str) -> Parser:
    def parser(value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise _Invalid(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value

    return parser


def _path(value: str) -> Path:
    return Path(value.strip()).expanduser()


def _choice(*choices: str) -> Parser:
    def parser(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            raise _Invalid(f"expected one of: {', '.join(choices)}")
        return value

    return parser


_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def _name(value: str) -> str:
    value = value.strip()
    if not _NAME.match(value):
        raise _Invalid("expected a name of lowercase letters, digits, '.', '_' or '-' (starting with a letter)")
    return value


def _source(value: str) -> str | None:
    value = value.strip()
    if value == "":
        return None
    if "://" in value and urlsplit(value).scheme not in {"http", "https", "file"}:
        raise _Invalid("expected an http(s):// URL of the publications backend or a file path")
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
        raise _Invalid("expected a cron expression of five fields 'minute hour day month weekday' or @daily")
    for index, (field, (lo, hi)) in enumerate(zip(fields, _CRON_RANGES, strict=True)):
        if index == 4:
            for number, day in enumerate(_DOW):
                field = field.lower().replace(day, str(number))
        for part in field.split(","):
            rng, _, step = part.partition("/")
            if step and not step.isdigit():
                raise _Invalid(f"bad step in cron field {index + 1} ({part!r})")
            if rng == "*":
                continue
            start, _, end = rng.partition("-")
            bounds = [start] + ([end] if end else [])
            if not all(b.isdigit() and lo <= int(b) <= hi for b in bounds):
                raise _Invalid(f"cron field {index + 1} ({part!r}) must be *, a number or a range within {lo}-{hi}")
    return spec


def _cron(value: str) -> str:
    return "" if value.strip() == "" else parse_cron(value)


GIB = 1024**3
MIB = 1024**2

#: Every setting, in the order of ``.env.example``.
FIELDS: tuple[Field, ...] = (
    # -- services
    Field("broker_url", _optional(_url("amqp", "amqps")), "",
          "RabbitMQ URL amqp://user:pass@host:5672/vhost; empty: embedded one-process mode", secret=True),
    Field("results_url", _url("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0",
          "Redis URL for task results, locks and worker heartbeats", secret=True),
    Field("api_url", _url("http", "https"), "http://127.0.0.1:8000",
          "where workers reach the API (archive upload/download, version checks)"),
    Field("api_token", _optional(_text), "",
          "bearer token for builds, uploads and rollbacks; empty: those endpoints are refused", secret=True),
    # -- disk and engines
    Field("data_dir", _path, "./recsys-data",
          "this process's disk: the API's archive store, or a worker machine's engine store"),
    Field("engine", _name, "annoy", "engine plugin (entry point in recsys.engines) used for builds"),
    Field("start_engine", _optional(_path), "",
          "an engine archive the API installs at start when its store is empty"),
    Field("source", _source, "",
          "publications source: http(s):// URL of the backend, or a JSON/JSONL(.gz) file; empty: demo corpus"),
    Field("rebuild_cron", _cron, "", "cron expression for scheduled rebuilds, e.g. '0 3 * * *'; empty: none"),
    Field("keep_engines", _int(2, 100), "2",
          "engine versions kept on each disk (the current one, the previous for rollback, ...)"),
    # -- the default engine (SentenceTransformer + Annoy)
    Field("model", _optional(_path), "",
          "embedding model: a local SentenceTransformer folder; empty: the packaged all-MiniLM-L6-v2"),
    Field("embedding_backend", _choice("auto", "torch", "onnx", "onnx-int8"), "auto",
          "how sentences are encoded: torch, onnx, onnx-int8; auto: the fastest with vectors identical to torch"),
    Field("embedding_batch_size", _int(1, 4096), "32", "sentences encoded per batch"),
    Field("device", _choice("auto", "cpu", "cuda"), "auto", "where torch runs the model; auto: a GPU when present"),
    Field("ann_trees", _int(0, 10_000), "0", "Annoy trees; 0: derived from the corpus size"),
    Field("ann_search_k", _int(-1, 10_000_000), "0",
          "Annoy nodes inspected per query; 0: derived from trees and k; -1: Annoy's default"),
    Field("cache_dir", _optional(_path), "",
          "cache for exported models and sentence vectors; empty: <data_dir>/cache"),
    # -- queues and timing
    Field("request_queue", _name, "recsys.requests", "queue of recommendation tasks"),
    Field("build_queue", _name, "recsys.builds", "queue of engine builds (kept apart so builds never block requests)"),
    Field("broadcast_exchange", _name, "recsys.broadcast", "fanout exchange of engine_updated broadcasts"),
    Field("request_timeout", _int(1, 600, " of seconds"), "30",
          "how long the API waits for a recommendation before answering 504"),
    Field("result_ttl", _int(10, 7 * 86400, " of seconds"), "600", "how long task results are kept"),
    Field("catchup_interval", _int(1, 86400, " of seconds"), "60",
          "how often a worker asks the API for its current engine, besides broadcasts"),
    Field("heartbeat_interval", _int(1, 3600, " of seconds"), "5",
          "how often a worker process records its heartbeat (it expires after three intervals)"),
    Field("build_lock_ttl", _int(10, 86400, " of seconds"), "60",
          "expiry of the cluster-wide build lock; its holder renews it while it builds"),
    Field("build_time_limit", _int(60, 7 * 86400, " of seconds"), "21600",
          "a build running longer than this is stopped"),
    # -- limits
    Field("max_body_bytes", _int(1024, 64 * MIB, " of bytes"), str(MIB), "largest JSON request body the API reads"),
    Field("archive_max_bytes", _int(1024, 64 * GIB, " of bytes"), str(4 * GIB), "largest engine archive accepted"),
    Field("archive_max_file_bytes", _int(1024, 64 * GIB, " of bytes"), str(3 * GIB),
          "largest single file inside an engine archive"),
    Field("archive_max_entries", _int(2, 100_000), "1000", "most files inside an engine archive"),
    Field("archive_max_ratio", _int(1, 100_000), "200",
          "largest uncompressed/compressed size ratio of one archive member (zip-bomb guard)"),
    Field("source_timeout", _float(0.1, 3600, " of seconds"), "30",
          "timeout of one request to the publications backend"),
    Field("source_retries", _int(0, 100), "5", "retries of a timed-out or 5xx page of the publications backend"),
    # -- process
    Field("log_level", _choice("debug", "info", "warning", "error"), "info", "log level of every recsys process"),
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


@dataclass(frozen=True)
class Settings:
    """Every RECSYS_ setting, typed. Build it with :meth:`from_env`; tests may call
    ``Settings(...)`` or ``settings.replace(...)`` directly."""

    broker_url: str | None = None
    results_url: str = "redis://127.0.0.1:6379/0"
    api_url: str = "http://127.0.0.1:8000"
    api_token: str | None = dataclasses.field(default=None, repr=False)
    data_dir: Path = Path("./recsys-data")
    engine: str = "annoy"
    start_engine: Path | None = None
    source: str | None = None
    rebuild_cron: str = ""
    keep_engines: int = 2
    model: Path | None = None
    embedding_backend: str = "auto"
    embedding_batch_size: int = 32
    device: str = "auto"
    ann_trees: int = 0
    ann_search_k: int = 0
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
    max_body_bytes: int = MIB
    archive_max_bytes: int = 4 * GIB
    archive_max_file_bytes: int = 3 * GIB
    archive_max_entries: int = 1000
    archive_max_ratio: int = 200
    source_timeout: float = 30.0
    source_retries: int = 5
    log_level: str = "info"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
    ) -> Settings:
        """Read every setting; the environment wins over the ``.env`` file.

        Raises ConfigError naming the variable, its value and what is expected;
        an unknown ``RECSYS_`` variable is logged as a warning (most likely a typo).
        """
        merged: dict[str, str] = {}
        if env_file is not None:
            merged.update(read_env_file(env_file))
        merged.update(os.environ if environ is None else environ)
        unknown = sorted(k for k in merged if k.startswith(PREFIX) and k not in _BY_ENV)
        if unknown:
            logger.warning(
                "ignoring unknown setting(s) %s: a typo? Known settings are listed in .env.example",
                ", ".join(unknown),
            )
        values: dict[str, Any] = {}
        for field in FIELDS:
            raw = merged.get(field.env, field.default)
            try:
                values[field.attr] = field.parse(raw)
            except _Invalid as exc:
                shown = "***" if field.secret else raw
                raise ConfigError(f"{field.env}={shown!r} is not valid: {exc}") from None
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the one-process mode."""
        return self.broker_url is None

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    def redacted(self) -> dict[str, Any]:
        """Settings as plain values with secrets hidden, for logs and `recsys settings`."""
        shown: dict[str, Any] = {}
        for field in FIELDS:
            value = getattr(self, field.attr)
            if field.secret and value:
                value = _redact(str(value))
            shown[field.env] = str(value) if isinstance(value, Path) else value
        return shown


def _redact(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme and parts.password:
        return value.replace(f":{parts.password}@", ":***@", 1)
    if parts.scheme:
        return value
    return "***"
