"""``apply_changes()``: apply the pending pushed publication changes as an incremental
build of the current engine and upload it (see :mod:`recsys_workers.applying`).

Runs on ``RECSYS_BUILD_QUEUE`` before waiting builds (priority 15); never retried (the
API re-sends while changes are pending); stopped after ``RECSYS_BUILD_TIME_LIMIT``.
The result is ``{"status": "done" | "busy" | "no_engine", "applied": [{"engine",
"changes", "changes_through", "publications", "uploaded", "seconds"}, ...]}``, or
``{"error": {"code", "message"}}`` (``apply_refused``: the changes are refused;
``unavailable``, ``source``, ``build_lock_lost``...: they stay pending).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dramatiq
from dramatiq import Broker
from dramatiq.middleware import CurrentMessage

from recsys import protocol
from recsys.errors import RecsysError
from recsys_workers.applying import run_apply
from recsys_workers.errors import attempt
from recsys_workers.services import WorkerServices

__all__ = ["APPLY_PRIORITY", "declare_apply_changes"]

logger = logging.getLogger(__name__)

#: After broadcasts (0) and requests (10), before full builds (20).
APPLY_PRIORITY = 15


def declare_apply_changes(broker: Broker, services: WorkerServices) -> dramatiq.Actor[Any, Any]:
    limit = services.settings.build_time_limit

    def apply_changes() -> dict[str, Any]:
        message = CurrentMessage.get_current_message()
        message_id = str(message.message_id) if message is not None else str(uuid.uuid4())
        outcome = attempt(lambda: run_apply(services, message_id), logger=logger,
                          failed=f"apply {message_id} failed", what="the apply",
                          limit=f"{limit} s (RECSYS_BUILD_TIME_LIMIT)",
                          consequence="; the engine in service is unchanged")
        return protocol.error_result(outcome) if isinstance(outcome, RecsysError) else outcome

    return dramatiq.actor(
        broker=broker,
        actor_name=protocol.APPLY_ACTOR,
        queue_name=services.settings.build_queue,
        priority=APPLY_PRIORITY,
        max_retries=0,
        store_results=True,
        time_limit=limit * 1000,
    )(apply_changes)
