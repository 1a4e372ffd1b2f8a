"""What the API knows of Redis before it sends a task whose result it must read there.

A task sent while Redis is down is work nobody can receive: the API cannot read its
result (it answers 503 anyway) and the worker cannot store it. :class:`Circuit` lets
:class:`~recsys_api.tasks.TaskClient` refuse such a task *before* it is sent, at almost
no cost while Redis is fine:

* every Redis contact of the API's tasks (a result read, a wait that timed out, a
  task record, a PING) tells the circuit whether Redis answered;
* after an answer, Redis is trusted for :data:`TRUST` seconds: under load every
  request's own wait keeps it trusted, so no request pays for a check;
* when the last answer is older, the next task first PINGs Redis (one round trip);
* after a failure, tasks are refused at once for :data:`REFUSE` seconds (a 503 in
  microseconds, with nothing sent); then one request at a time PINGs, and the first
  answer closes the circuit again.

Thread-safe (gunicorn threads share one per process). The embedded mode has none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from recsys.errors import Unavailable

__all__ = ["REFUSE", "TRUST", "Circuit"]

#: Seconds Redis is trusted after it last answered.
TRUST = 1.0
#: Seconds tasks are refused at once after Redis failed (then one request probes).
REFUSE = 0.25


class Circuit:
    """Refuses tasks while Redis is known to be down (see the module docstring).

    ``ping`` raises one of ``errors`` when Redis cannot be reached; ``where`` names it in
    error messages.
    """

    def __init__(
        self,
        ping: Callable[[], object],
        errors: tuple[type[BaseException], ...],
        *,
        where: str = "Redis",
        trust: float = TRUST,
        refuse: float = REFUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._errors = errors
        self.where = where
        self.trust = trust
        self.refuse = refuse
        self._clock = clock
        self._trusted_until = 0.0
        self._refused_until = 0.0
        self._failure: str | None = None
        self._failed_at = 0.0
        self._probing = threading.Lock()

    @property
    def open(self) -> bool:
        """Whether the last contact with Redis failed."""
        return self._failure is not None

    def check(self, what: str) -> None:
        """Return when Redis may be relied on for ``what`` (a task about to be sent);
        raise Unavailable, naming it, when it is known to be down or a PING fails."""
        now = self._clock()
        if now < self._trusted_until:
            return
        if self._failure is not None and now < self._refused_until:
            raise self._refusal(what, now)
        if not self._probing.acquire(blocking=False):  # another request is probing
            if self._failure is None:
                return  # Redis answered last time: no reason to refuse
            raise self._refusal(what, now)
        try:
            self._ping()
        except self._errors as exc:
            self.failed(exc)
            raise self._refusal(what, self._clock()) from exc
        finally:
            self._probing.release()
        self.succeeded()

    def succeeded(self) -> None:
        """Redis answered."""
        self._trusted_until = self._clock() + self.trust
        self._refused_until = 0.0
        self._failure = None

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer (``exc``)."""
        now = self._clock()
        self._trusted_until = 0.0
        self._refused_until = now + self.refuse
        self._failure = f"{type(exc).__name__}: {exc}"
        self._failed_at = now

    def _refusal(self, what: str, now: float) -> Unavailable:
        ago = max(0.0, now - self._failed_at)
        return Unavailable(
            f"Redis at {self.where} is unreachable ({self._failure}, {ago:.1f} s ago), so {what} was not sent: "
            "its result could not be read; retry in a few seconds"
        )
