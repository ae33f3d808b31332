"""The faust agents. Each body is a short recipe: decode, hand to a stage.

Topic values are raw bytes decoded here with pydantic, so messages stay plain
JSON with no framework envelope. faust acks a message whose agent raised, so
nothing escapes :func:`_process`: a poison message is dead-lettered, an
infrastructure outage (database down) is waited out with backoff, and any
other error is dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import psycopg
import psycopg_pool
from pydantic import BaseModel, ValidationError

from handlers.messages import (
    DeadLetter,
    DraftReady,
    EditRequested,
    EmailPending,
    InboundSms,
    ReplyApproved,
    WorkflowEvent,
)
from handlers.workflow import WorkflowState, is_terminal

from . import topics
from .runtime import Runtime

log = logging.getLogger(__name__)

MODELS: dict[str, type[BaseModel]] = {
    topics.EMAILS_PENDING: EmailPending,
    topics.EDITS_REQUESTED: EditRequested,
    topics.DRAFTS_READY: DraftReady,
    topics.SMS_INBOUND: InboundSms,
    topics.REPLIES_APPROVED: ReplyApproved,
    topics.WORKFLOW_EVENTS: WorkflowEvent,
}

INFRASTRUCTURE = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


def register(app: Any, runtime: Runtime) -> None:
    prefix = runtime.settings.kafka_topic_prefix
    stages = runtime.stages

    def topic(*names: str) -> Any:
        return app.topic(*(topics.full_name(prefix, n) for n in names),
                         key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def logical(kafka_topic: str) -> str:
        return kafka_topic.removeprefix(prefix)

    async def process(agent: str, event: Any, act: Callable[[Any], Awaitable[None]]) -> None:
        name = logical(event.message.topic)
        raw: bytes = event.value or b""
        key = event.key.decode("utf-8", "replace") if event.key else None
        try:
            message = MODELS[name].model_validate_json(raw)
        except (ValidationError, ValueError) as exc:
            await _dead_letter(runtime, name, key, raw, f"undecodable message: {exc}", "poison")
            return
        delay = 0.5
        while True:
            try:
                await act(message)
                return
            except INFRASTRUCTURE as exc:
                log.warning("%s: infrastructure unavailable (%s); retrying in %.1fs", name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing may escape an agent
                log.exception("%s: giving up on a message", name)
                await _dead_letter(runtime, name, key, raw, f"{type(exc).__name__}: {exc}", "permanent")
                message_id = getattr(message, "message_id", None)
                if message_id:
                    try:
                        await stages.fail_unexpected(message_id, agent, exc)
                    except Exception:  # noqa: BLE001 - the dead letter already records it
                        log.exception("%s: could not mark %s failed", name, message_id)
                return

    async def run(name: str, stream: AsyncIterator[Any], act: Callable[[Any], Awaitable[None]]) -> None:
        async for event in stream.events():  # type: ignore[attr-defined]
            await process(name, event, act)
            runtime.progress.tick(name)

    async def draft(message: EmailPending | EditRequested) -> None:
        await stages.draft(message.message_id)

    async def notify(message: DraftReady | WorkflowEvent) -> None:
        if isinstance(message, WorkflowEvent) and not is_terminal(WorkflowState(message.to_state)):
            return  # only a decision can free the phone
        await stages.present()

    async def command(message: InboundSms) -> None:
        await stages.command(message)

    async def send(message: ReplyApproved) -> None:
        await stages.send(message.message_id)

    def agent(name: str, act: Callable[[Any], Awaitable[None]], *sources: str) -> None:
        async def body(stream: AsyncIterator[Any]) -> None:
            await run(name, stream, act)

        body.__name__ = body.__qualname__ = f"{name}_agent"
        # concurrency=1: faust may commit past in-flight messages otherwise (faust#606).
        app.agent(topic(*sources), name=name, concurrency=1)(body)
        runtime.progress.register(name, sources)

    agent("draft", draft, topics.EMAILS_PENDING, topics.EDITS_REQUESTED)
    agent("notify", notify, topics.DRAFTS_READY, topics.WORKFLOW_EVENTS)
    agent("command", command, topics.SMS_INBOUND)
    agent("send", send, topics.REPLIES_APPROVED)


async def _dead_letter(runtime: Runtime, topic: str, key: str | None, raw: bytes, error: str,
                       kind: Literal["poison", "permanent"]) -> None:
    log.error("dead-lettering a message from %s (key %s): %s", topic, key, error)
    letter = DeadLetter(source_topic=topic, key=key, value=raw.decode("utf-8", "replace"), error=error,
                        error_kind=kind, stage=topic, attempts=1,
                        at=runtime.clock.now())
    delay = 0.5
    while True:
        try:
            async with runtime.repo.transaction() as tx:
                await tx.publish(topics.DEADLETTER, key, letter)
            return
        except INFRASTRUCTURE as exc:
            log.warning("dead letter waits for the database: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
