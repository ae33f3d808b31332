"""The faust agents: one per :class:`~handlers.workflow.Stage`, each a recipe.

Topic values are raw bytes decoded by :class:`~streams.pipeline.consumer.MessageHandler`
with pydantic, so messages stay plain JSON with no framework envelope. An
agent takes what has arrived (up to BATCH_MAX records, waiting at most
BATCH_WINDOW after the first for more; :mod:`streams.pipeline.batching`) and hands it
over at once; the records are acknowledged after the handler returns, never
before. One actor per agent: faust's ``concurrency > 1`` can commit an offset
past a message still in flight (faust-streaming issue 606).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from handlers.messages import (
    DraftReady,
    DraftUndelivered,
    EditRequested,
    EmailPending,
    InboundSms,
    PhoneFreed,
    ReplyApproved,
    SourceRecord,
    TopicMessage,
)
from handlers.workflow import Stage
from streams.kafka import topics
from streams.pipeline.batching import take_batches
from streams.pipeline.consumer import Act, MessageHandler
from streams.pipeline.progress import AgentProgress
from streams.stages import Stages
from streams.storage.repository import WorkflowRepository

#: The most records an agent hands over at once.
BATCH_MAX = 500
#: How long an agent waits, after a first record, for the batch to fill: the
#: latency a lone message pays, against a transaction per message under load.
BATCH_WINDOW = 0.001


def register(app: Any, stages: Stages, repo: WorkflowRepository, progress: AgentProgress, prefix: str) -> None:
    """Add the four agents to ``app``, reporting progress to ``progress``."""

    def agent(stage: Stage, act: Act, *sources: str, together: bool = False) -> None:
        handler = MessageHandler(stage, topics.MODELS, act, repo.publish, stages.fail_unexpected,
                                 stages.clock, together=together)
        channel = app.topic(*(topics.full_name(prefix, s) for s in sources), key_type=bytes,
                            value_type=bytes, key_serializer="raw", value_serializer="raw")

        async def body(stream: Any) -> None:
            async for events in take_batches(stream, BATCH_MAX, BATCH_WINDOW):
                await handler.handle_many([
                    SourceRecord(event.message.topic.removeprefix(prefix), event.key, event.value or b"",
                                 event.message.partition, event.message.offset,
                                 dict(event.message.headers or ()))
                    for event in events])
                progress.tick(stage)

        body.__name__ = body.__qualname__ = f"{stage}_agent"
        app.agent(channel, name=stage.value, concurrency=1)(body)
        progress.register(stage, sources)

    async def draft(messages: Sequence[EmailPending | EditRequested], _: SourceRecord | None) -> None:
        await stages.draft(messages)  # one transaction for the batch

    async def notify(messages: Sequence[TopicMessage], source: SourceRecord | None) -> None:
        for message in messages:  # a draft SMS that did not reach the phone is withdrawn first
            if isinstance(message, DraftUndelivered):
                await stages.withdraw_undelivered(message, source)
        # Drafts are ready, or a phone was freed: once for all of them, on each person's phone.
        await stages.notify(source, about={m.message_id for m in messages
                                             if isinstance(m, (DraftReady, PhoneFreed, DraftUndelivered))})

    async def command(messages: Sequence[InboundSms], _: SourceRecord | None) -> None:
        for message in messages:  # one at a time (``together`` is off): in the order the person sent them
            await stages.command(message)

    async def send(messages: Sequence[ReplyApproved], source: SourceRecord | None) -> None:
        for message in messages:
            await stages.send(message.message_id, source)

    agent(Stage.DRAFT, draft, topics.EMAILS_PENDING, topics.EDITS_REQUESTED, together=True)
    agent(Stage.NOTIFY, notify, topics.DRAFTS_READY, topics.PHONE_FREED, topics.DRAFTS_UNDELIVERED, together=True)
    agent(Stage.COMMAND, command, topics.SMS_INBOUND)
    agent(Stage.SEND, send, topics.REPLIES_APPROVED)
