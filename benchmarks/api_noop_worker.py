"""A worker whose ``recommend`` actor does nothing: it isolates the API + queue + results
overhead in ``benchmarks/api.py``.

    dramatiq benchmarks.api_noop_worker --processes 2 --threads 4

It reads the same ``RECSYS_`` settings as the real workers (broker, results, request
queue, result TTL), registers an actor under the real name ``recommend`` on the request
queue, and answers a fixed, recommend-shaped result at once. It is a benchmark tool,
never deployed: the real actors live in recsys_workers.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from recsys import protocol
from recsys.config import Settings

settings = Settings.from_env()
if settings.broker_url is None:
    raise SystemExit("set RECSYS_BROKER_URL (and RECSYS_RESULTS_URL): this worker runs on RabbitMQ and Redis")

broker = RabbitmqBroker(url=settings.broker_url)  # default middleware, like a plain Dramatiq deployment
broker.add_middleware(Results(backend=RedisBackend(url=settings.results_url), result_ttl=settings.result_ttl * 1000))
dramatiq.set_broker(broker)


def noop_result(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": {"name": "noop", "version": "0", "generation": request.get("min_generation")},
        "recommendations": [],
    }


@dramatiq.actor(actor_name=protocol.RECOMMEND_ACTOR, queue_name=settings.request_queue, store_results=True,
                max_retries=0)
def recommend(request: dict[str, Any]) -> dict[str, Any]:
    return noop_result(request)
