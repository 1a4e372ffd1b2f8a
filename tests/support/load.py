"""Keep-alive load for fault tests: N clients in a closed loop, each on one persistent
connection (as real clients are: a new connection per request hides faults such as
orphaned workers holding the port), recording every status, failure and latency."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["KeepAliveLoad", "Sample"]


@dataclass(frozen=True)
class Sample:
    started: float  # time.monotonic()
    seconds: float
    status: int | None  # None: a transport error (connection refused/reset, timeout)
    error: str | None = None


@dataclass
class KeepAliveLoad:
    """``clients`` threads sending ``request(client)`` back to back until :meth:`stop`."""

    base_url: str
    request: Callable[[httpx.Client], httpx.Response]
    clients: int = 8
    timeout: float = 30.0
    pause_after_error: float = 0.05
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> KeepAliveLoad:
        for number in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> KeepAliveLoad:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = self.request(client)
                    sample = Sample(started, time.monotonic() - started, response.status_code)
                except httpx.TransportError as exc:
                    sample = Sample(started, time.monotonic() - started, None, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.samples.append(sample)
                if sample.status is None:
                    self._stop.wait(self.pause_after_error)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` more samples than now were recorded."""
        target = len(self.samples) + count
        deadline = time.monotonic() + timeout
        while len(self.samples) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load made {len(self.samples)} of {target} requests in {timeout} s")
            time.sleep(0.05)

    def statuses(self, since: float = 0.0) -> Counter[int | None]:
        with self._lock:
            return Counter(s.status for s in self.samples if s.started >= since)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self.samples)
        return {
            "requests": len(samples),
            "statuses": dict(Counter(str(s.status) for s in samples)),
            "max_latency_s": max((s.seconds for s in samples), default=0.0),
        }
