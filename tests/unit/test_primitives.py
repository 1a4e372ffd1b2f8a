"""One of each primitive, in the layer that owns it (checked on the source, AST):

===========================  ==============================  ============================
primitive                    the one module                  what the check looks for
===========================  ==============================  ============================
fsync / atomic writes        recsys/fsutil.py                ``os.fsync``
cross-process file lock      recsys/locks.py                 ``fcntl.flock``
Redis client construction    recsys/kv.py (``redis_client``)  ``Redis(...)``, ``.from_url``
broadcast exchange / publish recsys_api/broadcast.py         ``exchange_declare``,
                                                             ``basic_publish``
===========================  ==============================  ============================

and every Redis client the services build has the one policy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.kv import CONNECT_TIMEOUT, HEALTH_CHECK_INTERVAL, READ_MARGIN, RedisKV
from recsys_api.redis_results import redis_backend
from recsys_workers.broker import redis_result_backend

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("plugins/*/recsys_engine_*"))]
PACKAGES = ["recsys", "recsys_api", "recsys_workers", *PLUGINS]

#: attribute name -> (what it is, the one module allowed to use it)
PRIMITIVES = {
    "fsync": ("an fsync", "recsys/fsutil.py"),
    "flock": ("a file lock", "recsys/locks.py"),
    "from_url": ("a Redis client", "recsys/kv.py"),
    "Redis": ("a Redis client", "recsys/kv.py"),
    "StrictRedis": ("a Redis client", "recsys/kv.py"),
    "exchange_declare": ("the broadcast exchange's declaration", "recsys_api/broadcast.py"),
    "basic_publish": ("a broadcast publish", "recsys_api/broadcast.py"),
}


def uses(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr in PRIMITIVES:
            found.append((node.attr, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {"redis", "fcntl"}:
            found += [(alias.name, node.lineno) for alias in node.names if alias.name in PRIMITIVES]
    return found


def test_each_primitive_lives_in_one_module():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for name, line in uses(path):
                what, home = PRIMITIVES[name]
                if rel != home:
                    offenders.append(f"{rel}:{line} makes {what} ({name}); use {home}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    ("client", "read_timeout"),
    [
        (lambda: RedisKV("redis://127.0.0.1:1/0").client, 2.0),
        (lambda: redis_backend("redis://127.0.0.1:1/0", longest_wait=30).client, 30 + READ_MARGIN),
        (lambda: redis_result_backend(Settings(results_url="redis://127.0.0.1:1/0", request_timeout=20)).client,
         20 + READ_MARGIN),
    ],
    ids=["kv", "api-results", "worker-results"],
)
def test_every_redis_client_has_the_one_policy(client, read_timeout):
    made = client()  # nothing connects
    options = made.connection_pool.connection_kwargs
    assert options["socket_connect_timeout"] == CONNECT_TIMEOUT
    assert options["socket_timeout"] == read_timeout
    assert options["health_check_interval"] == HEALTH_CHECK_INTERVAL
    retry = made.get_retry()
    assert retry._retries == 1 and type(retry._backoff).__name__ == "NoBackoff"
