"""What the stages need of storage, as ``Protocol`` classes.

:class:`Repository` is the store (``transaction()``, ``session()`` and the few
single-statement reads and writes), :class:`RepositoryTransaction` the work
inside one transaction, :class:`RepositorySession` transactions on one
connection, and :class:`PhoneSlotPart` / :class:`SmsLedgerPart` the two parts
hanging off a transaction (``tx.phone``, ``tx.sms``).

Two implementations conform, both checked by mypy: the PostgreSQL one
(:class:`streams.storage.repository.WorkflowRepository`) and the in-memory fake
of the fast stage tests (``tests/support/fakes.py``); one contract suite runs on
both (``tests/integration/test_repository_contract.py``). This module imports no
database driver, so the stages, typed against it, import none themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from handlers.deliveries import DeliveryReport
from handlers.messages import Publishable
from handlers.workflow import EmailStatus, WorkflowState
from streams.storage.records import AuditEntry, DeliveryRecorded, Email, Workflow


class PhoneSlotPart(Protocol):
    """The one draft on the person's phone (``tx.phone``)."""

    async def lock(self, phone: str) -> Workflow | None: ...

    async def oldest_ready(self) -> Workflow | None: ...

    async def count_waiting(self, exclude: str | None = None) -> int: ...

    async def assign(self, phone: str, message_id: str) -> None: ...

    async def release(self, message_ids: Collection[str]) -> list[tuple[str, str]]: ...

    async def presented_at(self, phone: str) -> datetime | None: ...

    async def unmark_reminded(self, message_id: str, reason: str) -> bool: ...


class SmsLedgerPart(Protocol):
    """Every inbound SMS, once (``tx.sms``)."""

    async def record(self, sms_id: str, phone: str, body: str, received_at: datetime | None,
                     *, outcome: str | None = None) -> bool: ...

    async def claim(self, sms_id: str, phone: str, body: str, received_at: datetime | None) -> bool: ...

    async def settle(self, sms_id: str, outcome: str, message_id: str | None) -> None: ...


class RepositoryTransaction(Protocol):
    """Work inside one transaction: committed when its block exits, undone if it raises."""

    @property
    def phone(self) -> PhoneSlotPart: ...

    @property
    def sms(self) -> SmsLedgerPart: ...

    def savepoint(self) -> AbstractAsyncContextManager[None]: ...

    # workflows
    async def get(self, message_id: str, *, for_update: bool = False) -> Workflow | None: ...

    async def transition(self, message_id: str, expected: WorkflowState | Collection[WorkflowState],
                         new: WorkflowState, reason: str, *, error: str | None = None, **fields: Any) -> bool: ...

    async def transition_many(self, message_ids: Sequence[str], expected: WorkflowState | Collection[WorkflowState],
                              new: WorkflowState, reason: str, *, error: str | None = None,
                              **fields: Any) -> list[str]: ...

    # sending
    async def hold_presentation(self, message_id: str) -> bool: ...

    async def presenter_gone(self, message_id: str) -> bool: ...

    async def hold_send(self, message_id: str) -> bool: ...

    async def claim_send(self, message_id: str, reply_message_id: str, *, again: bool = False) -> bool: ...

    async def mark_reminded(self, message_id: str) -> bool: ...

    async def record_sent_reply(self, message_id: str, body: str) -> None: ...

    # delivery reports
    async def record_delivery(self, report: DeliveryReport) -> DeliveryRecorded: ...

    async def adopt_deliveries(self, message_id: str, sms_id: str | None) -> DeliveryRecorded: ...

    # parking
    async def park(self, message_id: str, state: WorkflowState, *, stage: str, peer: str, reason: str,
                   since: datetime, attempts: int, next_attempt_at: datetime, release_send: bool = False) -> bool: ...

    async def note_outage(self, peer: str) -> bool: ...

    async def claim_due_parked(self, limit: int) -> list[Workflow]: ...

    async def end_outages(self) -> list[str]: ...

    # intake
    async def create_workflow(self, email: Email, *, body_preview: str, reason: str) -> bool: ...

    async def email(self, message_id: str) -> Email | None: ...

    async def set_email_status(self, message_ids: Collection[str], status: EmailStatus, *,
                               error: str | None = None) -> None: ...

    # outbox
    async def publish(self, message: Publishable) -> None: ...

    async def publish_many(self, messages: Sequence[Publishable]) -> None: ...


class RepositorySession(Protocol):
    """Transactions on one connection, sharing the presentations they hold until it ends."""

    def transaction(self) -> AbstractAsyncContextManager[RepositoryTransaction]: ...


class Repository(Protocol):
    """The store the stages read and write workflows through."""

    def transaction(self) -> AbstractAsyncContextManager[RepositoryTransaction]: ...

    def session(self) -> AbstractAsyncContextManager[RepositorySession]: ...

    async def transition(self, message_id: str, expected: WorkflowState | Collection[WorkflowState],
                         new: WorkflowState, reason: str, *, error: str | None = None, **fields: Any) -> bool: ...

    async def publish(self, message: Publishable) -> None: ...

    async def get(self, message_id: str) -> Workflow | None: ...

    async def audit_trail(self, message_id: str) -> Sequence[AuditEntry]: ...

    async def due_timeouts(self, now: datetime) -> list[str]: ...

    async def due_reminders(self, presented_before: datetime) -> list[str]: ...
