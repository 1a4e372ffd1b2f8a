"""The actors of a worker, declared on a given broker (see :func:`declare_actors`).

=====================  ======================  =========  ==========================
actor                  queue                   priority   engine option
=====================  ======================  =========  ==========================
``engine_updated``     RECSYS_BROADCAST_EXCHANGE   0      none (it installs engines)
``recommend``          RECSYS_REQUEST_QUEUE       10      any (strict per request)
``apply_changes``      RECSYS_BUILD_QUEUE         15      none
``recommend_batch``    RECSYS_REQUEST_QUEUE       10      any (strict per request)
``build_index``        RECSYS_BUILD_QUEUE         20      none
``scheduled_build``    RECSYS_BUILD_QUEUE          0      none (periodic with a cron)
=====================  ======================  =========  ==========================

Priorities order the messages one process has already fetched (lower first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq import Broker

from recsys_workers.actors.apply import declare_apply_changes
from recsys_workers.actors.broadcast import declare_engine_updated
from recsys_workers.actors.build import declare_build_index
from recsys_workers.actors.recommend import declare_recommend, declare_recommend_batch
from recsys_workers.schedule import declare_scheduled_build
from recsys_workers.services import WorkerServices

__all__ = ["Actors", "declare_actors"]


@dataclass(frozen=True)
class Actors:
    recommend: dramatiq.Actor[Any, Any]
    recommend_batch: dramatiq.Actor[Any, Any]
    build_index: dramatiq.Actor[Any, Any]
    engine_updated: dramatiq.Actor[Any, Any]
    scheduled_build: dramatiq.Actor[Any, Any]
    apply_changes: dramatiq.Actor[Any, Any]


def declare_actors(broker: Broker, services: WorkerServices) -> Actors:
    """Declare every recsys actor on ``broker`` (which needs the middleware of
    :func:`recsys_workers.app.create_worker_app`)."""
    build_index = declare_build_index(broker, services)
    return Actors(
        recommend=declare_recommend(broker, services.settings),
        recommend_batch=declare_recommend_batch(broker, services.settings),
        build_index=build_index,
        engine_updated=declare_engine_updated(broker, services),
        scheduled_build=declare_scheduled_build(broker, services, build_index),
        apply_changes=declare_apply_changes(broker, services),
    )
