"""The message loop every agent shares: decode, act, and never lose a message.

faust acks a message whose agent raised, so nothing may escape
:meth:`MessageHandler.handle_many`. A message that does not decode is a poison
message: dead-lettered with its original bytes, never retried. While the
database is unreachable the act is repeated (:func:`outlasting_outages`), so
an outage delays work but drops none. Any other error is a bug: the message is
dead-lettered with its reason, and the workflow it names is failed so that it
is visible and retryable instead of stuck mid-stage (with no second dead
letter: one per record given up on).

Any bytes may come in: a dead letter keeps the record's key and value bytes
as they are and describes them in text that any store takes
(:func:`handlers.messages.printable`), so dead-lettering cannot fail on what
a record holds. Each record is handled on its own: one that cannot even be
dead-lettered (a bug) is logged with where it is and the records beside it
are still acted on.

The loop hands the record a message came from to the stage with it
(``act(messages, source)``; ``source`` is None for a batch acted on at once),
so a stage that gives up dead-letters that very record in the transaction
that records the failure.

Agents hand over the records they took together (:mod:`streams.pipeline.batching`;
acknowledged once this returns). A stage that works on many messages at
once (``together``) gets the whole batch in one call, which is one
transaction; if that call fails with a bug, the batch is handled again one
message at a time, so only the culprit is dead-lettered. Other stages get one
call per message, in order.

Plain code with its collaborators passed in, so it is tested without a broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from handlers.clock import Clock
from handlers.messages import DeadLetterKind, Publishable, SourceRecord, TopicMessage, printable
from handlers.workflow import Stage
from streams.observability import metrics, tracing
from streams.stages.retrying import Exhausted
from streams.storage.outages import outlasting_outages

log = logging.getLogger(__name__)

#: A stage's work on decoded messages, in the order they came, with the record
#: they came from when there is one (a single message), for its dead letter.
Act = Callable[[Sequence[Any], SourceRecord | None], Awaitable[None]]
#: Marks the workflow a bug stopped failed: (message_id, stage, error, the record).
FailUnexpected = Callable[[str, Stage, Exception, SourceRecord | None], Awaitable[None]]


class MessageHandler:
    """Handles one stage's messages (see the module docstring).

    ``act(messages, source)`` does the stage's work; with ``together`` it gets
    every decoded message of a batch at once (``source`` None), otherwise one
    at a time with its record. ``publish`` queues a dead letter (it may raise
    an infrastructure error, which is outlasted); ``fail_unexpected(message_id,
    stage, error, source)`` marks a workflow failed after a bug.
    """

    def __init__(
        self,
        stage: Stage,
        models: Mapping[str, type[TopicMessage]],
        act: Act,
        publish: Callable[[Publishable], Awaitable[None]],
        fail_unexpected: FailUnexpected,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        together: bool = False,
    ) -> None:
        self.stage = stage
        self.models = models
        self.act = act
        self.publish = publish
        self.fail_unexpected = fail_unexpected
        self.clock = clock
        self.sleep = sleep
        self.together = together

    async def handle(self, topic: str, key: bytes | None, value: bytes | None, *, partition: int | None = None,
                     offset: int | None = None, headers: Mapping[str, bytes] | None = None) -> None:
        """Handle one record of logical ``topic``; returns once it may be acknowledged."""
        await self.handle_many([SourceRecord(topic, key, value or b"", partition, offset, headers)])

    async def handle_many(self, records: Sequence[SourceRecord]) -> None:
        """Handle records taken together, in order; returns once they may be acknowledged."""
        decoded: list[tuple[SourceRecord, TopicMessage]] = []
        for record in records:
            message = await self._decode(record)
            if message is not None:
                decoded.append((record, message))
        if self.together and len(decoded) > 1:
            try:
                with metrics.STAGE_SECONDS.labels(self.stage.value).time():
                    await outlasting_outages(lambda: self.act([m for _, m in decoded], None),
                                             f"{self.stage} on {len(decoded)} messages", self.sleep)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - find the culprit: one message at a time
                log.exception("%s: a batch of %d failed; handling its messages one at a time",
                              self.stage, len(decoded))
        for record, message in decoded:
            await self._act_on(record, message)

    async def _decode(self, record: SourceRecord) -> TopicMessage | None:
        """The record's message; None (and a dead letter) when it is poison."""
        try:
            return self.models[record.topic].model_validate_json(record.value)
        except (ValidationError, ValueError, KeyError) as exc:
            with tracing.working_on(trace_id=tracing.trace_id_of(record.headers)):
                await self._dead_letter(record, "poison", UndecodableMessage(f"undecodable message: {exc}"))
            return None

    async def _act_on(self, record: SourceRecord, message: TopicMessage) -> None:
        message_id = getattr(message, "message_id", None)
        with tracing.working_on(message_id, tracing.trace_id_of(record.headers)):
            try:
                with metrics.STAGE_SECONDS.labels(self.stage.value).time():
                    await outlasting_outages(lambda: self.act([message], record),
                                             f"{self.stage} on {record.topic}", self.sleep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing may escape an agent
                log.exception("%s: giving up on a message", record.topic)
                await self._dead_letter(record, "permanent", exc)
                if message_id:
                    try:
                        await outlasting_outages(
                            lambda: self.fail_unexpected(message_id, self.stage, exc, record),
                            "marking a workflow failed", self.sleep)
                    except Exception:  # noqa: BLE001 - the dead letter already records it
                        log.exception("%s: could not mark %s failed", record.topic, message_id)

    async def _dead_letter(self, record: SourceRecord, kind: DeadLetterKind, error: Exception) -> None:
        """Dead-letter ``record``; never raises but to stop (a bug here is logged
        with where the record is, so that it can be found and replayed)."""
        log.error("dead-lettering a message from %s (key %s): %s", record.topic, printable(record.key, 200),
                  printable(str(error)))
        letter = record.dead_letter(self.stage, kind, error,
                                    cause=error.last if isinstance(error, Exhausted) else None)
        try:
            await outlasting_outages(lambda: self.publish(letter), "dead letter", self.sleep)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the records beside it must still be acted on
            log.critical("could not dead-letter the record at %s[%s]@%s", record.topic, record.partition,
                         record.offset, exc_info=True)


class UndecodableMessage(ValueError):
    """A record whose value is not the topic's message (a poison message)."""
