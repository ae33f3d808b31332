"""The generation pool: many slow generator calls in flight, none lost.

A real generation takes seconds, so drafting one email at a time holds every
other email up. The draft agent therefore only moves a workflow to
``ai_generating`` (and its Kafka message is done with); this pool leases such
workflows from PostgreSQL, up to GENERATION_CONCURRENCY at once, and runs
:meth:`Stages.generate` for each.

Why work driven from the database, not concurrent agents: faust's
``concurrency > 1`` (and manual out-of-order acks) can commit a Kafka offset
past a message still in flight, which a crash then loses (faust-streaming
issue 606). Here the Kafka offset moves only after the request is recorded,
and the work itself is a lease: renewed every GENERATION_LEASE/3 seconds
while the call runs, so a worker that dies mid-generation leaves a lease that
lapses within GENERATION_LEASE, and any pool (its own successor, or another
worker's) takes the draft again. Leases are taken oldest email first with
SKIP LOCKED, so several workers share the work without overlap.

A pool wakes on NOTIFY (a trigger fires when a workflow enters
``ai_generating``), whenever one of its calls finishes, and at least every
second (parked drafts falling due, lapsed leases).

The generator is respected: when it answers "slow down" (429/503 with
Retry-After) the stages close a gate that every call waits at, and the pool
halves how many calls it keeps in flight; each call that then succeeds
earns back a fraction of one, up to GENERATION_CONCURRENCY (additive
increase, multiplicative decrease, as TCP does with its window).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from handlers.workflow import Stage
from streams.observability import metrics, tracing
from streams.stages import Stages
from streams.storage.database import run_on_notify
from streams.storage.outages import INFRASTRUCTURE_ERRORS, outlasting_outages
from streams.storage.records import Workflow
from streams.storage.repository import WorkflowRepository

log = logging.getLogger(__name__)

CHANNEL = "orchestrator_generate"


class GenerationPool:
    """Runs up to ``concurrency`` generations at once for this worker."""

    def __init__(self, stages: Stages, repo: WorkflowRepository, conninfo: str, concurrency: int,
                 lease_seconds: float, poll_interval: float = 1.0) -> None:
        self.stages = stages
        self.repo = repo
        self.conninfo = conninfo
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.finished = 0  # calls that ended (drafted, parked or failed)
        #: Calls allowed in flight now: ``concurrency``, less while the generator pushes back.
        self.limit = float(concurrency)
        self._holds_seen = stages.generator_gate.holds
        metrics.GENERATION_LIMIT.set(concurrency)
        self.last_error: str | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Generate until cancelled; survives database outages."""
        listener = asyncio.create_task(
            run_on_notify(self.conninfo, CHANNEL, self.poll_interval, self._nudge, self._failed, "generation pool"),
            name="generation-listener")
        renewer = asyncio.create_task(self._renew_leases(), name="generation-leases")
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    await self.fill()
                except Exception as exc:  # noqa: BLE001 - the pool must outlive any one failure
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("generation pool: could not lease drafts")
        finally:
            listener.cancel()
            renewer.cancel()
            for task in self.in_flight.values():
                task.cancel()
            await asyncio.gather(listener, renewer, *self.in_flight.values(), return_exceptions=True)

    async def _nudge(self) -> None:
        self._wake.set()

    def _failed(self, error: str) -> None:
        self.last_error = error

    def _adapt(self, succeeded: bool) -> None:
        """Halve the limit when the generator has asked to slow down since the
        last look; let it grow back by 1/limit per call that succeeded."""
        holds = self.stages.generator_gate.holds
        if holds != self._holds_seen:
            self._holds_seen = holds
            self.limit = max(1.0, self.limit / 2)
            log.warning("generation pool: the generator asks to slow down; %d call(s) in flight at most",
                        int(self.limit))
        elif succeeded and self.limit < self.concurrency:
            self.limit = min(float(self.concurrency), self.limit + 1 / self.limit)
        metrics.GENERATION_LIMIT.set(int(self.limit))

    async def fill(self) -> int:
        """Lease as many drafts as there are free slots and start them; returns how many."""
        self._adapt(succeeded=False)
        free = int(self.limit) - len(self.in_flight)
        if free <= 0:
            return 0
        try:
            leased = await self.repo.lease_drafts(free, self.lease_seconds)
        except INFRASTRUCTURE_ERRORS as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("generation pool: database unavailable (%s)", exc)
            return 0
        self.last_error = None
        for wf in leased:
            task = asyncio.create_task(self._generate(wf), name=f"generate {wf.message_id}")
            self.in_flight[wf.message_id] = task
            task.add_done_callback(functools.partial(self._done, wf.message_id))
        metrics.GENERATIONS_IN_FLIGHT.set(len(self.in_flight))
        return len(leased)

    def _done(self, message_id: str, task: asyncio.Task[None]) -> None:
        self.in_flight.pop(message_id, None)
        if not task.cancelled():
            self.finished += 1
        metrics.GENERATIONS_IN_FLIGHT.set(len(self.in_flight))
        self._adapt(succeeded=not task.cancelled())
        self._wake.set()  # a slot is free

    async def _generate(self, wf: Workflow) -> None:
        """One generation; nothing escapes (a bug fails the workflow, visibly)."""
        started = time.monotonic()
        # This task's own context: its log lines name the workflow and its trace.
        tracing.MESSAGE_ID.set(wf.message_id)
        tracing.TRACE_ID.set(wf.trace_id)
        try:
            with metrics.STAGE_SECONDS.labels(Stage.DRAFT.value).time():
                await outlasting_outages(lambda: self.stages.generate(wf), f"generating {wf.message_id}")
        except asyncio.CancelledError:
            raise  # the worker is stopping: the lease lapses and another pool takes it
        except Exception as exc:  # noqa: BLE001 - a bug, not a peer: record it on the workflow
            log.exception("generation of %s failed unexpectedly", wf.message_id)
            try:
                await outlasting_outages(lambda: self.stages.fail_unexpected(wf.message_id, Stage.DRAFT, exc),
                                         "marking a workflow failed")
            except Exception:  # noqa: BLE001 - logged; the lease lapses and it is tried again
                log.exception("could not mark %s failed", wf.message_id)
        else:
            log.debug("generated %s in %.2fs", wf.message_id, time.monotonic() - started)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.repo.renew_leases(list(self.in_flight), self.lease_seconds)
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("generation pool: could not renew leases (%s)", exc)
