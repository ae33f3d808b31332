"""Workflows whose Kafka message was lost: left in ``pending``,
``user_edit_requested`` or ``user_approved`` past a grace period, with
nothing parked. The sweep (:mod:`streams.pipeline.housekeeping`)
takes them here and queues their message again in the same transaction; the
stages are idempotent (a compare-and-set from the state the message expects),
so a message that was only slow does no harm. See docs/design.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from handlers.clock import Clock
from handlers.messages import Publishable
from handlers.workflow import WorkflowState
from streams.observability import metrics
from streams.storage.base import Pool
from streams.storage.outbox import OutboxWrites
from streams.storage.records import Workflow

#: The states a lost message leaves a workflow in, the message that moves it on being on a topic.
STALLED_STATES = (WorkflowState.PENDING, WorkflowState.USER_EDIT_REQUESTED, WorkflowState.USER_APPROVED)


class StalledWorkflows:
    """The sweep's side of lost messages, over a connection pool."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def redrive(self, grace: timedelta, message_of: Callable[[Workflow], Publishable],
                      limit: int = 100) -> list[str]:
        """Queue ``message_of(wf)`` again for each workflow unchanged (and not
        set going again) for ``grace``, never for one parked. An approved
        reply whose send has begun is included: the send stage never starts
        it twice (it waits while its sender lives, and settles a send whose
        sender died as cut off), so a sender that died after another worker
        stopped waiting for it is not left in ``user_approved``. SKIP LOCKED,
        so two sweeps never take the same one; each is taken at most once per
        ``grace``. A reply scheduled for later is left alone until the sweep
        has released it (docs/design.md, "Send later")."""
        now = self.clock.now()
        async with self.pool.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(
                    "WITH due AS (SELECT id FROM workflow_state WHERE current_state = ANY(%s)"
                    "  AND park_peer IS NULL AND updated_at <= %s AND (redriven_at IS NULL OR redriven_at <= %s)"
                    "  AND (send_at IS NULL OR send_released_at IS NOT NULL)"  # a reply sent later waits for its time
                    "  ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                    " UPDATE workflow_state w SET redriven_at = %s FROM due WHERE w.id = due.id RETURNING w.*",
                    ([s.value for s in STALLED_STATES], now - grace, now - grace, limit, now))
                stalled = [Workflow.from_row(row) for row in await cur.fetchall()]
                writes = OutboxWrites(conn, self.clock)
                await writes.publish_many([message_of(wf) for wf in stalled])
        metrics.committed(writes.queued)
        return [wf.message_id for wf in stalled]
