"""Timeouts and retries: the sweep's timeouts, and what a person asks for
from the API or the dashboard (time a draft out, retry a workflow)."""

from __future__ import annotations

from handlers.workflow import TIMES_OUT_FROM, TIMES_OUT_TO, WorkflowState, plan_retry
from streams.stages.context import StageContext
from streams.stages.failures import restart_message


class UnknownWorkflow(LookupError):
    """No workflow has this message_id."""


class NotAllowedNow(Exception):
    """The workflow's current state does not allow what was asked; the message says why."""


async def expire_timeouts(ctx: StageContext) -> int:
    """Time out every draft the person has not answered by its ``timeout_at``."""
    expired = 0
    for message_id in await ctx.repo.due_timeouts(ctx.clock.now()):
        expired += await ctx.repo.transition(
            message_id, TIMES_OUT_FROM, TIMES_OUT_TO,
            f"no answer within {ctx.settings.user_response_timeout:g}s")
    return expired


async def time_out(ctx: StageContext, message_id: str, reason: str) -> None:
    """Time out ``message_id`` now; raises :class:`UnknownWorkflow` or :class:`NotAllowedNow`."""
    wf = await ctx.repo.get(message_id)
    if wf is None:
        raise UnknownWorkflow(f"no workflow for {message_id}")
    if not await ctx.repo.transition(message_id, TIMES_OUT_FROM, TIMES_OUT_TO, reason):
        raise NotAllowedNow(f"only a workflow awaiting the user can be timed out; this one is "
                            f"{wf.current_state.value}")


async def retry(ctx: StageContext, message_id: str, reason: str) -> WorkflowState:
    """Restart a failed or timed-out workflow where
    :func:`~handlers.workflow.plan_retry` says; returns the state it
    re-entered. Raises :class:`UnknownWorkflow` or :class:`NotAllowedNow`."""
    async with ctx.repo.transaction() as tx:
        wf = await tx.get(message_id, for_update=True)
        if wf is None:
            raise UnknownWorkflow(f"no workflow for {message_id}")
        restart = plan_retry(wf.current_state, wf.failed_stage, has_draft=bool(wf.ai_reply_text))
        if restart is None:
            raise NotAllowedNow(f"only failed or timed-out workflows can be retried; this one is "
                                f"{wf.current_state.value}")
        await tx.transition(message_id, wf.current_state, restart.state, reason,
                            error_message=None, send_attempted_at=None)
        await tx.give_codes([message_id])  # its decision gave its code up: open again, it gets one
        await tx.publish(restart_message(restart.stage, wf))
    return restart.state
