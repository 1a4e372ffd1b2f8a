"""Argument parsing, logging and error handling of the ``recsys`` command.

Exit codes (one per failure class, like dramatiq's CLI)::

    0  success                      4  configuration error (a RECSYS_ setting)
    1  other error                  5  engine not found or failed to load
    2  usage error                  6  publications source failed
    3  invalid archive              7  a query failed (recommend: unknown id, bad query)
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterable, Sequence

from recsys import __version__
from recsys.errors import (
    ConfigError,
    EngineLoadError,
    EngineNotFound,
    InvalidArchive,
    InvalidQuery,
    RecsysError,
    SourceError,
)

__all__ = ["EXIT_CODES", "SERVE_MODULES", "build_parser", "main", "missing_modules"]

RET_OK = 0
RET_ERROR = 1
RET_USAGE = 2

#: Exit code per error class; the most specific class wins.
EXIT_CODES: tuple[tuple[type[RecsysError], int], ...] = (
    (InvalidArchive, 3),
    (ConfigError, 4),
    (EngineNotFound, 5),
    (EngineLoadError, 5),
    (SourceError, 6),
    (InvalidQuery, 7),
)

Handler = Callable[[argparse.Namespace], int]

#: The libraries of the ``recsys[serve]`` extra that ``recsys serve`` imports (through
#: recsys_api, recsys_workers and cheroot); the core installs none of them.
SERVE_MODULES = (
    "falcon", "dramatiq", "pika", "periodiq", "cheroot", "prometheus_client", "swagger_ui_bundle", "jsonschema",
)


def exit_code_for(error: RecsysError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return RET_ERROR


def build_parser() -> argparse.ArgumentParser:
    from recsys.cli import local, push

    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Recommend scientific publications for a piece of text.",
        epilog="Settings come from RECSYS_* environment variables and ./.env (see 'recsys settings').",
    )
    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    _add_log_flags(parser, default=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    local.add_commands(commands)
    push.add_command(commands)

    serve = commands.add_parser(
        "serve",
        help="run the API, a worker and the scheduler in one process (no RabbitMQ/Redis)",
        description=(
            "Embedded mode: one process serves the HTTP API with a Dramatiq worker on an in-process "
            "broker and the scheduler; on first start it builds an engine from RECSYS_SOURCE "
            "(default: the bundled demo corpus)."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--threads", type=int, default=16, help="HTTP threads (default: %(default)s)")
    serve.add_argument("--worker-threads", type=int, default=2, help="worker threads (default: %(default)s)")
    serve.set_defaults(handler=_serve)
    for command in commands.choices.values():  # `recsys build ... -q` as well as `recsys -q build ...`
        _add_log_flags(command, default=False)
    return parser


def _add_log_flags(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """``-v``/``-q`` on the main parser (``default``: with their defaults) and on each
    subcommand's (without: a flag not given after the subcommand keeps the main one's)."""
    parser.add_argument("-v", "--verbose", action="count", default=0 if default else argparse.SUPPRESS,
                        help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", default=False if default else argparse.SUPPRESS,
                        help="only warnings and errors on stderr")


def missing_modules(names: Iterable[str]) -> list[str]:
    """The top-level modules of ``names`` that cannot be imported here (not installed)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def _serve(args: argparse.Namespace) -> int:
    missing = missing_modules(SERVE_MODULES)
    if missing:
        raise RecsysError(
            f"'recsys serve' needs the service libraries of the recsys[serve] extra (not installed here: "
            f"{', '.join(missing)}); install them with: pip install 'recsys[serve]' (in a checkout: scripts/install)"
        )
    # Imported lazily: the web framework and the queue are only needed for this command.
    from recsys.cli.serve import run

    code: int = run(args)
    return code


def configure_logging(verbosity: int, quiet: bool, level_name: str = "info") -> None:
    level = getattr(logging, level_name.upper(), logging.INFO)
    if quiet:
        level = logging.WARNING
    elif verbosity == 1:
        level = min(level, logging.INFO)
    elif verbosity >= 2:
        level = logging.DEBUG
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print(f"recsys {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `recsys recommend ... | head -1`
        return RET_OK
