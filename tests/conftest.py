"""Shared fixtures: real RabbitMQ and Redis for integration tests, isolated per session.

* ``rabbitmq_url``: a RabbitMQ vhost of this test session's own (created with
  ``rabbitmqctl``, deleted at the end), so parallel test runs never share queues.
* ``redis_url``: a Redis database of this session's own: the first of databases
  1..15 whose claim key we can set, flushed before use and at the end.

When a service is unreachable the tests that need it are skipped with the reason,
except under CI (``CI=true``), where they fail: CI must not pass by skipping.
Set ``TEST_AMQP_URL`` / ``TEST_REDIS_URL`` (server URLs without a vhost / database) to
point at other servers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

AMQP_BASE = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def unavailable(what: str) -> None:
    """Skip on a developer's machine, fail under CI."""
    if IN_CI:
        pytest.fail(f"{what} is unreachable, and CI=true requires it", pytrace=False)
    pytest.skip(f"{what} is unreachable (start it, or run with CI=true to make this a failure)")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    if not _reachable(AMQP_BASE, 5672):
        unavailable(f"RabbitMQ at {AMQP_BASE}")
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        unavailable("rabbitmqctl (needed to create a private vhost)")
    vhost = f"/recsys-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def run(*args: str) -> None:
        subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)

    run("add_vhost", vhost)
    run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{AMQP_BASE}/{quote(vhost, safe='')}"
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if not _reachable(REDIS_BASE, 6379):
        unavailable(f"Redis at {REDIS_BASE}")
    import redis

    claim = f"recsys-test-claim:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_BASE}/{db}")
        # A claimed database holds a 'recsys-test-claim' key; take a free one atomically.
        if client.set("recsys-test-claim", claim, nx=True, ex=3600):
            client.flushdb()
            client.set("recsys-test-claim", claim, ex=3600)
            try:
                yield f"{REDIS_BASE}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    unavailable("a free Redis database (1..15 are all claimed by other test sessions)")
