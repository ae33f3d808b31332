"""The faust agents: one per :class:`~handlers.workflow.Stage`, each a recipe.

Topic values are raw bytes decoded by :class:`~streams.consumer.MessageHandler`
with pydantic, so messages stay plain JSON with no framework envelope. An
agent handles one message at a time: faust's ``concurrency > 1`` can commit an
offset past a message still in flight (faust-streaming issue 606).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from handlers.messages import EditRequested, EmailPending, InboundSms, ReplyApproved, TopicMessage
from handlers.workflow import Stage

from . import topics
from .consumer import MessageHandler
from .health import AgentProgress
from .repository import WorkflowRepository
from .stages import Stages


def register(app: Any, stages: Stages, repo: WorkflowRepository, progress: AgentProgress, prefix: str) -> None:
    """Add the four agents to ``app``, reporting progress to ``progress``."""

    def agent(stage: Stage, act: Callable[[Any], Awaitable[None]], *sources: str) -> None:
        handler = MessageHandler(stage, topics.MODELS, act, repo.publish, stages.fail_unexpected,
                                 stages.clock)
        channel = app.topic(*(topics.full_name(prefix, s) for s in sources), key_type=bytes,
                            value_type=bytes, key_serializer="raw", value_serializer="raw")

        async def body(stream: AsyncIterator[Any]) -> None:
            async for event in stream.events():  # type: ignore[attr-defined]
                record = event.message
                await handler.handle(record.topic.removeprefix(prefix), event.key, event.value,
                                     partition=record.partition, offset=record.offset,
                                     headers=dict(record.headers or ()))
                progress.tick(stage)

        body.__name__ = body.__qualname__ = f"{stage}_agent"
        app.agent(channel, name=stage.value, concurrency=1)(body)
        progress.register(stage, sources)

    async def draft(message: EmailPending | EditRequested) -> None:
        await stages.draft(message.message_id)

    async def notify(_: TopicMessage) -> None:
        await stages.notify()  # a draft is ready, or the phone was freed

    async def command(message: InboundSms) -> None:
        await stages.command(message)

    async def send(message: ReplyApproved) -> None:
        await stages.send(message.message_id)

    agent(Stage.DRAFT, draft, topics.EMAILS_PENDING, topics.EDITS_REQUESTED)
    agent(Stage.NOTIFY, notify, topics.DRAFTS_READY, topics.PHONE_FREED)
    agent(Stage.COMMAND, command, topics.SMS_INBOUND)
    agent(Stage.SEND, send, topics.REPLIES_APPROVED)
