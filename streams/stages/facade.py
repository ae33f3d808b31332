"""The stages behind one object, for the agents, the generation pool, the
sweep and the web layer.

:class:`Stages` is the shared :class:`~streams.stages.context.StageContext`
with one method per stage, each handing over to the stage's module with the
object itself as the context.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from handlers.messages import (
    DraftUndelivered,
    EditRequested,
    EmailPending,
    InboundSms,
    SourceRecord,
)
from handlers.workflow import Stage, WorkflowState
from streams.stages import actions, elsewhere, failures, parking, scheduling
from streams.stages import command as commanding
from streams.stages import deliveries as delivering
from streams.stages import draft as drafting
from streams.stages import notify as notifying
from streams.stages import send as sending
from streams.stages.context import StageContext
from streams.storage.records import Workflow


#: How many code-less open workflows one sweep gives codes to.
MISSING_CODES_BATCH = 500


class Stages(StageContext):
    """The work each agent does, one method per :class:`~handlers.workflow.Stage`.

    Orchestration only: each stage reads the workflow through the repository,
    asks :mod:`handlers` what to do, calls a peer under the retry policy, and
    records the outcome with a compare-and-set transition whose follow-up
    messages go through the outbox in the same transaction. A redelivered
    message finds the workflow already moved on and does nothing. Every
    failure ends in a written decision (:mod:`streams.stages.failures`).

    ``source``: the record the message loop took the work from, if any; a
    stage that gives up dead-letters it.
    """

    async def draft(self, messages: Sequence[EmailPending | EditRequested]) -> None:
        await drafting.draft(self, messages)

    async def generate(self, wf: Workflow) -> None:
        await drafting.generate(self, wf)

    async def notify(self, source: SourceRecord | None = None, about: Collection[str] | None = None) -> None:
        await notifying.notify(self, source, about)

    async def withdraw_undelivered(self, message: DraftUndelivered, source: SourceRecord | None = None) -> None:
        await delivering.withdraw_undelivered(self, message, source)

    async def send_reminders(self) -> int:
        return await notifying.send_reminders(self)

    async def command(self, sms: InboundSms) -> None:
        await commanding.command(self, sms)

    async def send(self, message_id: str, source: SourceRecord | None = None) -> None:
        await sending.send(self, message_id, source)

    async def expire_timeouts(self) -> int:
        return await actions.expire_timeouts(self)

    async def time_out(self, message_id: str, reason: str) -> None:
        await actions.time_out(self, message_id, reason)

    async def retry(self, message_id: str, reason: str) -> WorkflowState:
        return await actions.retry(self, message_id, reason)

    async def close_answered_elsewhere(self) -> int:
        return await elsewhere.close_answered_elsewhere(self)

    async def release_due_sends(self) -> int:
        return await scheduling.release_due_sends(self)

    async def give_missing_codes(self) -> int:
        """Codes for open workflows that have none (from before codes), so
        ``list``, ``all 3`` and an answer by code reach them too; the sweep
        asks once per start. A retried workflow gets its code as it reopens."""
        async with self.repo.transaction() as tx:
            return await tx.give_missing_codes(MISSING_CODES_BATCH)

    async def resume_parked(self, limit: int = 100) -> int:
        return await parking.resume_parked(self, limit)

    async def fail_unexpected(self, message_id: str, stage: Stage, error: Exception,
                              source: SourceRecord | None = None) -> None:
        await failures.fail_unexpected(self, message_id, stage, error, source)
