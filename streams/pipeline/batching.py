"""Batches of records from a faust stream, acknowledged only once handled.

faust's ``Stream.take_events(max_, within)`` buffers events and acknowledges
them after the loop body that received the batch returns, which is what an
at-least-once consumer needs; but it wakes every ``within`` seconds even when
nothing arrives (measured: an idle worker's four agents at 5 ms took 7.7 % of
a core, against 2.1 % with this). :func:`take_batches` is the same buffering, adapted from faust's own
(faust-streaming 0.15, BSD licence), with one change: it sleeps until a first
event arrives, then waits at most ``within`` for the batch to fill.

A batch is acknowledged only when the consumer comes back for the next one,
that is, once its body handled every record of it: a body that raised, or
was cancelled while the worker stopped, leaves its batch unacknowledged, so
the committed offset stays before it and the records are delivered again
after a restart or a rebalance (faust's own loop acknowledges them either way).

It leans on faust's stream internals (processors, the passive drainer), which
is why faust-streaming is pinned below 0.16.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """Yield lists of at most ``max_`` events from ``stream`` (a faust Stream):
    whatever arrived within ``within`` seconds of the first one. Each batch is
    acknowledged when the consumer asks for the next one, never before, and
    never when the consumer's body raised on it or was cancelled."""
    events: list[Any] = []
    arrived = asyncio.Event()
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    enable_acks: bool = stream.enable_acks

    async def add_to_batch(value: Any) -> Any:
        # A processor: faust's passive drainer calls it for each event, one at a time.
        nonlocal consuming
        if consuming is not None:  # a batch is being handled: wait for it
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches: an event without current_event")
        events.append(event)
        arrived.set()
        if len(events) >= max_:
            full.set()
            consumed.clear()
            await stream.wait(consumed)  # never more than max_ in a batch
        return value

    stream.enable_acks = False  # acked here, after the batch is handled
    stream.add_processor(add_to_batch)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            if await stream.wait_for_stopped(arrived):  # asleep while idle
                break
            if not full.is_set():
                await stream.wait_for_stopped(full, timeout=within)
            consuming = asyncio.get_running_loop().create_future()
            batch = list(events)
            handled = False
            try:
                yield batch
                handled = True
            finally:
                events.clear()
                arrived.clear()
                full.clear()
                if handled:
                    for event in batch:
                        await stream.ack(event)
                if not consuming.done():
                    consuming.set_result(None)
                consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_batch)
