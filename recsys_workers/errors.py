"""The workers' own error class, and how an actor turns any failure into a RecsysError.

:class:`InvalidEngineOption` is in the tree of :mod:`recsys.errors` (an InternalError); it is also a
dramatiq ``MiddlewareError``, the one kind of exception ``Broker.emit_before`` lets
through (it logs and swallows the others), so a wrong actor declaration stops the
worker at start.

:func:`attempt` is the one ``try``/``except`` of the actors: a task's failure is a
result, stored at once and never retried (``{"error": {"code", "message"}}``, see
:func:`recsys.protocol.error_result`), or, for the broadcast, a line in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from dramatiq.middleware import MiddlewareError
from dramatiq.middleware.time_limit import TimeLimitExceeded

from recsys.errors import InternalError, RecsysError, TaskTimeout

__all__ = ["InvalidEngineOption", "attempt"]

T = TypeVar("T")


class InvalidEngineOption(InternalError, MiddlewareError):
    """Raised when an actor is declared with an unknown ``engine`` option (a bug of the
    worker's code: code ``internal``)."""

    def __init__(self, message: str) -> None:
        # Not MiddlewareError's __init__: it keeps no args, and RecsysError's message reads them.
        InternalError.__init__(self, message)


def attempt(
    body: Callable[[], T],
    *,
    logger: logging.Logger,
    failed: str,
    what: str,
    limit: str,
    level: int = logging.ERROR,
    expected: tuple[type[RecsysError], ...] = (),
    consequence: str = "",
) -> T | RecsysError:
    """Run a task's ``body``: its value, or the RecsysError that says why it failed, logged once.

    Every log line starts with ``failed`` (``"recommend failed"``) and ends with
    ``consequence`` (``"; the engine in service is unchanged"``):

    * A RecsysError is returned as it is, logged at ``level`` (at INFO when it is one
      of the ``expected`` ones: an answer, not a fault): ``"<failed> (<code>): <message>"``.
    * The actor's time limit (dramatiq's TimeLimitExceeded, which ``except Exception``
      would miss) becomes :class:`~recsys.errors.TaskTimeout`, "<what> took longer than
      <limit> and was stopped", logged at WARNING (or ``level`` when higher).
    * Any other exception becomes :class:`~recsys.errors.InternalError` naming it,
      logged with its traceback.
    """
    try:
        return body()
    except RecsysError as exc:
        logger.log(logging.INFO if isinstance(exc, expected) else level,
                   "%s (%s): %s%s", failed, exc.code, exc.message, consequence)
        return exc
    except TimeLimitExceeded:
        logger.log(max(level, logging.WARNING), "%s: it ran longer than %s and was stopped%s",
                   failed, limit, consequence)
        return TaskTimeout(f"{what} took longer than {limit} and was stopped")
    except Exception as exc:
        logger.exception("%s: unexpected %s: %s%s", failed, type(exc).__name__, exc, consequence)
        return InternalError(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}); see the worker's log")
