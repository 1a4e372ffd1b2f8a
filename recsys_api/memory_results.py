"""An in-memory Dramatiq result backend for the embedded one-process mode (and tests).

It lives in ``recsys_api`` beside :mod:`recsys_api.broadcast`: both are the API's half
of the messaging contract, need Dramatiq but no Falcon, and are the only API modules
the workers import (``recsys_workers.broker`` stores results here in embedded mode).

In embedded mode the API, a Dramatiq worker and the scheduler share one process and
one :class:`~dramatiq.brokers.stub.StubBroker`. The API sends a message and waits on
this backend; the worker's ``Results`` middleware stores the result into it.

Two things differ from Dramatiq's ``StubBackend``:

* **No polling.** ``get_result(block=True)`` waits on a :class:`threading.Condition`
  that every store notifies, so a waiter returns as soon as its result is stored
  (Dramatiq's base class sleeps with an exponential back-off between polls).
* **Bounded memory.** Each result expires after its ttl. Expired results are dropped
  in expiry order (a heap) on every store and every read, so a long-running process
  holds at most the results of the last ``result_ttl`` seconds. ``StubBackend``
  keeps every result forever, in a dict shared by all its instances.

Results are stored encoded (JSON, with the broker's encoder), exactly as in Redis,
so a result that would not survive Redis fails the same way here.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

from dramatiq.results import ResultBackend, ResultMissing, ResultTimeout
from dramatiq.results.backend import DEFAULT_TIMEOUT

__all__ = ["MemoryResultBackend"]


class MemoryResultBackend(ResultBackend):
    """Results kept in this process, with expiry; storing a result wakes its waiters.

    Thread-safe. ``clock`` (seconds, monotonic) can be replaced in tests.
    """

    def __init__(self, *, namespace: str = "dramatiq-results", clock: Any = time.monotonic) -> None:
        super().__init__(namespace=namespace)
        self._clock = clock
        self._results: dict[str, tuple[bytes, float]] = {}
        self._expiries: list[tuple[float, str]] = []
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            self._drop_expired(self._clock())
            return len(self._results)

    def get_result(self, message: Any, *, block: bool = False, timeout: int | None = None) -> Any:
        """The result of ``message``; with ``block``, wait up to ``timeout`` ms for it.

        Raises ResultMissing (not blocking, no result yet), ResultTimeout (blocking,
        none within the timeout) or ResultFailure (the actor failed).
        """
        key = self.build_message_key(message)
        wait = (DEFAULT_TIMEOUT if timeout is None else timeout) / 1000
        deadline = self._clock() + wait
        with self._changed:
            while True:
                now = self._clock()
                self._drop_expired(now)
                found = self._results.get(key)
                if found is not None:
                    data = found[0]
                    break
                if not block:
                    raise ResultMissing(message)  # type: ignore[no-untyped-call]
                if now >= deadline:
                    raise ResultTimeout(message)  # type: ignore[no-untyped-call]
                self._changed.wait(deadline - now)
        return self.unwrap_result(self.encoder.decode(data))  # type: ignore[no-untyped-call]

    def _store(self, message_key: str, result: Any, ttl: int) -> None:
        data = self.encoder.encode(result)
        with self._changed:
            now = self._clock()
            expires = now + ttl / 1000
            self._results[message_key] = (data, expires)
            heapq.heappush(self._expiries, (expires, message_key))
            self._drop_expired(now)
            self._compact()
            self._changed.notify_all()

    def take_result(self, message: Any, *, timeout: int) -> Any:
        """Wait like ``get_result(block=True)``, then drop the result (its one reader has it)."""
        try:
            return self.get_result(message, block=True, timeout=timeout)
        finally:
            self.forget(message)

    def forget(self, message: Any) -> None:
        """Drop the result of ``message`` now (its reader has it and nobody else will ask)."""
        with self._changed:
            self._results.pop(self.build_message_key(message), None)
            self._compact()

    def _get(self, message_key: str) -> Any:
        # Not used by get_result above; kept so the base class's helpers work.
        from dramatiq.results.backend import Missing

        with self._changed:
            self._drop_expired(self._clock())
            found = self._results.get(message_key)
        return Missing if found is None else self.encoder.decode(found[0])

    def _compact(self) -> None:
        """Rebuild the expiry heap when most of its entries are stale (results forgotten or
        stored again), so that it never grows past about twice the live results (the lock
        is held)."""
        if len(self._expiries) > 64 and len(self._expiries) > 2 * len(self._results):
            self._expiries = [(expires, key) for key, (_, expires) in self._results.items()]
            heapq.heapify(self._expiries)

    def _drop_expired(self, now: float) -> None:
        """Drop every result whose expiry has passed (the lock is held)."""
        while self._expiries and self._expiries[0][0] <= now:
            expires, key = heapq.heappop(self._expiries)
            current = self._results.get(key)
            # A key stored again later has a newer expiry: its older heap entry is stale.
            if current is not None and current[1] == expires:
                del self._results[key]
