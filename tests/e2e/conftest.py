"""Fixtures of the end-to-end tests: proxies to this session's RabbitMQ vhost and Redis
database, a publications backend, log tails of failed tests, and a final cleanup.

When a test fails, the last lines of the log of every process that wrote to its log
during that test are added to the report. At the end of the session any process
still running is killed (its whole process group).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.e2e.backend import PublicationsBackend, demo_corpus
from tests.support.processes import KNOWN, STARTED
from tests.support.proxy import TcpProxy

TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:  # type: ignore[attr-defined]
        started = item.stash.get(_STARTED_AT, 0.0)
        for process in KNOWN:
            try:
                written = process.log.stat().st_mtime
            except FileNotFoundError:
                continue
            if written >= started:
                report.sections.append(  # type: ignore[attr-defined]
                    (f"log of {process.name} (last {TAIL_LINES} lines, {process.log})", process.tail(TAIL_LINES))
                )
    return report


_STARTED_AT = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED_AT] = time.time() - 1.0


@pytest.fixture(scope="session", autouse=True)
def _kill_leftovers() -> Iterator[None]:
    yield
    for process in list(STARTED):
        process.kill9()


def _target(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture(scope="module")
def rabbitmq_proxy(rabbitmq_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(_target(rabbitmq_url, 5672), name="rabbitmq-proxy").start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def redis_proxy(redis_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(_target(redis_url, 6379), name="redis-proxy").start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def backend() -> Iterator[PublicationsBackend]:
    """The publications backend, serving the demo corpus at first."""
    server = PublicationsBackend(demo_corpus())
    with server.serve():
        yield server
