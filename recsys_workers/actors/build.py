"""``build_index(force=False)``: build an engine from every publication and upload it to the API
(with ``force``: past the API's quality gate, ``PUT /v1/engine/archive?force=true``).

Runs on ``RECSYS_BUILD_QUEUE`` so a long build never blocks requests or broadcasts;
never retried; stopped after ``RECSYS_BUILD_TIME_LIMIT``. The work is
:func:`recsys_workers.building.run_build`. The result is ``{"engine": {"name",
"version", "generation"}, "publications", "sentences", "archive": {"size",
"sha256"}, "uploaded": {"bytes", "files", "thin"}, "seconds"}``, or ``{"error": {"code", "message"}}`` with code
``build_running`` (another build holds the cluster-wide lock: the message names it),
the RecsysError's code (``source``, ``engine_not_found``, ``upload_refused``,
``unavailable``, ``config``...), ``timeout``, or ``internal`` (logged with its
traceback; :func:`recsys_workers.errors.attempt`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dramatiq
from dramatiq import Broker
from dramatiq.middleware import CurrentMessage

from recsys import protocol
from recsys.errors import BuildLockHeld, RecsysError
from recsys_workers.applying import pending_changes
from recsys_workers.building import run_build
from recsys_workers.errors import attempt
from recsys_workers.services import WorkerServices

__all__ = ["BUILD_PRIORITY", "declare_build_index"]

logger = logging.getLogger(__name__)

#: Dramatiq runs lower numbers first: builds after broadcasts (0) and requests (10).
BUILD_PRIORITY = 20


def declare_build_index(broker: Broker, services: WorkerServices) -> dramatiq.Actor[Any, Any]:
    limit = services.settings.build_time_limit

    def build_index(force: bool = False) -> dict[str, Any]:
        message = CurrentMessage.get_current_message()
        if message is None:  # called directly, not through a worker
            message = dramatiq.Message(queue_name=services.settings.build_queue, actor_name=protocol.BUILD_ACTOR,
                                       args=(), kwargs={}, options={}, message_id=str(uuid.uuid4()))
        outcome = attempt(lambda: run_build(services, message, _results_of(broker), force=force), logger=logger,
                          failed=f"build {message.message_id} failed", what="the build",
                          limit=f"{limit} s (RECSYS_BUILD_TIME_LIMIT)", expected=(BuildLockHeld,),
                          consequence="; the engine in service is unchanged")
        if isinstance(outcome, RecsysError):
            return protocol.error_result(outcome)
        _apply_what_arrived(broker, services)
        return outcome

    return dramatiq.actor(
        broker=broker,
        actor_name=protocol.BUILD_ACTOR,
        queue_name=services.settings.build_queue,
        priority=BUILD_PRIORITY,
        max_retries=0,
        store_results=True,
        time_limit=limit * 1000,
    )(build_index)


def _apply_what_arrived(broker: Broker, services: WorkerServices) -> None:
    """Publication changes pushed while the build ran stay pending (the build's manifest
    says which it includes): send their apply now rather than at the API's next resend."""
    pending = pending_changes(services)
    if pending:
        logger.info("%d publication changes were pushed during the build; sending apply_changes", len(pending))
        broker.enqueue(dramatiq.Message(queue_name=services.settings.build_queue, actor_name=protocol.APPLY_ACTOR,
                                        args=(), kwargs={}, options={}))


def _results_of(broker: Broker) -> Any:
    try:
        return broker.get_results_backend()
    except RuntimeError:
        return None
