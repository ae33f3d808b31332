"""The message loop every agent shares: decode, act, and never lose a message.

faust acks a message whose agent raised, so nothing may escape
:meth:`MessageHandler.handle`. A message that does not decode is a poison
message: dead-lettered with its original bytes, never retried. While the
database is unreachable the act is repeated (:func:`outlasting_outages`), so
an outage delays work but drops none. Any other error is a bug: the message is
dead-lettered with its reason, and the workflow it names is failed so that it
is visible and retryable instead of stuck mid-stage.

Plain code with its collaborators passed in, so it is tested without a broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import ValidationError

from handlers.clock import Clock
from handlers.messages import DeadLetter, TopicMessage
from handlers.workflow import Stage

from .retrying import outlasting_outages

log = logging.getLogger(__name__)

Act = Callable[[Any], Awaitable[None]]


class MessageHandler:
    """Handles one stage's messages (see the module docstring).

    ``publish`` queues a dead letter (it may raise an infrastructure error,
    which is outlasted); ``fail_unexpected(message_id, stage, error)`` marks a
    workflow failed after a bug.
    """

    def __init__(
        self,
        stage: Stage,
        models: Mapping[str, type[TopicMessage]],
        act: Act,
        publish: Callable[[TopicMessage], Awaitable[None]],
        fail_unexpected: Callable[[str, Stage, Exception], Awaitable[None]],
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.stage = stage
        self.models = models
        self.act = act
        self.publish = publish
        self.fail_unexpected = fail_unexpected
        self.clock = clock
        self.sleep = sleep

    async def handle(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Handle one record of logical ``topic``; returns once it may be acknowledged."""
        raw = value or b""
        key_text = key.decode("utf-8", "replace") if key else None
        try:
            message = self.models[topic].model_validate_json(raw)
        except (ValidationError, ValueError) as exc:
            await self._dead_letter(topic, key_text, raw, f"undecodable message: {exc}", "poison")
            return
        try:
            await outlasting_outages(lambda: self.act(message), f"{self.stage} on {topic}", self.sleep)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing may escape an agent
            log.exception("%s: giving up on a message", topic)
            await self._dead_letter(topic, key_text, raw, f"{type(exc).__name__}: {exc}", "permanent")
            message_id = getattr(message, "message_id", None)
            if message_id:
                try:
                    await outlasting_outages(lambda: self.fail_unexpected(message_id, self.stage, exc),
                                             "marking a workflow failed", self.sleep)
                except Exception:  # noqa: BLE001 - the dead letter already records it
                    log.exception("%s: could not mark %s failed", topic, message_id)

    async def _dead_letter(self, topic: str, key: str | None, raw: bytes, error: str,
                           kind: Literal["poison", "permanent"]) -> None:
        log.error("dead-lettering a message from %s (key %s): %s", topic, key, error)
        letter = DeadLetter(source_topic=topic, key=key, value=raw.decode("utf-8", "replace"), error=error,
                            error_kind=kind, stage=self.stage.value, attempts=1, at=self.clock.now())
        await outlasting_outages(lambda: self.publish(letter), "dead letter", self.sleep)
