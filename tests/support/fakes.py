"""In-memory stand-ins for the repository and the peers, for fast stage tests.

:class:`FakeRepository` keeps the same contract as
:class:`streams.storage.repository.WorkflowRepository` (both conform to
:class:`streams.storage.protocol.Repository`, checked by mypy; compare-and-set transitions
checked against the real state machine, the phone slot, the SMS ledger, the
send claim, the outbox); ``tests/integration/test_repository_contract.py`` runs one set of
contract tests against both. A transaction that raises is rolled back.
"""

from __future__ import annotations

import copy
import random
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Literal

from handlers.clock import Clock
from handlers.codes import MAX_DIGITS, capacity, new_codes
from handlers.deliveries import Delivery, DeliveryReport, audit_reason, moves_forward
from handlers.errors import PermanentError, TransientError
from handlers.drafts import GeneratedDraft
from handlers.elsewhere import SentReply
from handlers.lessons import Evidence, Learnt, Lesson, Scope
from handlers.messages import PhoneFreed, Publishable, WorkflowEvent
from handlers.threads import EARLIER_CHARS, EARLIER_HTML_CHARS, continues, same_sender
from handlers.workflow import (
    CLOSABLE_STATES,
    QUEUED_FOR_PHONE_STATES,
    READY_STATE,
    TIMES_OUT_FROM,
    EmailStatus,
    WorkflowState,
    check_transition,
    email_status_for,
    frees_the_phone,
    is_terminal,
)
from streams.storage.records import AuditEntry, DeliveryRecorded, Email, Question, Workflow
from streams.storage.repository import REMINDED, SETTABLE_COLUMNS, park_reason, send_claim_reason
from streams.storage.scheduled import SEND_DUE

S = WorkflowState
_UNPARKED: dict[str, Any] = {"park_stage": None, "park_peer": None, "park_reason": None, "parked_since": None,
                             "park_attempts": 0, "next_attempt_at": None}


@dataclass
class _Data:
    emails: dict[str, Email] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    audit: list[tuple[str, AuditEntry]] = field(default_factory=list)
    outbox: list[Publishable] = field(default_factory=list)
    phones: dict[str, str | None] = field(default_factory=dict)
    #: When the draft on each phone was put on it.
    presented: dict[str, datetime] = field(default_factory=dict)
    sms: dict[str, dict[str, Any]] = field(default_factory=dict)
    reply_drafts: dict[str, str] = field(default_factory=dict)
    outages: set[str] = field(default_factory=set)
    #: (peer, person) told of each outage (peer_outage_told).
    told: set[tuple[str, int]] = field(default_factory=set)
    #: Presentations held by a live worker (an advisory lock on its session, in PostgreSQL).
    presenting: set[str] = field(default_factory=set)
    #: Replies being sent by a live worker (an advisory lock on its session, in PostgreSQL).
    sending: set[str] = field(default_factory=set)
    #: Drafts the person asked for by code (workflow_state.present_requested_at).
    requested: dict[str, datetime] = field(default_factory=dict)
    #: A pending ``all 3`` per phone: the drafts it would ignore, and until when.
    confirmations: dict[str, Question] = field(default_factory=dict)
    #: Delivery reports by (the gateway's SMS id, status), in the order recorded.
    deliveries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: The newer email that closed each superseded workflow (workflow_state.superseded_by).
    superseded_by: dict[str, str] = field(default_factory=dict)
    #: lesson_evidence rows as (evidence, kind), oldest first; lessons by id.
    evidence: list[tuple[Evidence, str]] = field(default_factory=list)
    lessons: dict[int, Lesson] = field(default_factory=dict)
    #: Whose each evidence row (same order) and each lesson (by id) is.
    evidence_people: list[int] = field(default_factory=list)
    lesson_people: dict[int, int] = field(default_factory=dict)


class _Part:
    def __init__(self, tx: FakeTransaction) -> None:
        self.tx = tx
        self.data = tx.data


class FakePhoneSlot(_Part):
    async def lock(self, phone: str) -> Workflow | None:
        held = self.data.phones.setdefault(phone, None)
        return self.data.workflows.get(held) if held else None

    async def oldest_ready(self, *, person: int) -> Workflow | None:
        now = self.tx.clock.now()
        ready = [wf for wf in self.data.workflows.values() if wf.current_state is READY_STATE
                 and wf.person_id == person
                 and (wf.next_attempt_at is None or wf.next_attempt_at <= now)]
        ready.sort(key=lambda wf: (-wf.priority, wf.email_received_at or datetime.max.replace(tzinfo=UTC),
                                   wf.created_at or datetime.max.replace(tzinfo=UTC)))
        return ready[0] if ready else None

    async def people_of(self, message_ids: Collection[str]) -> list[int]:
        return sorted({wf.person_id for m in message_ids if (wf := self.data.workflows.get(m)) is not None
                       and wf.person_id is not None})

    async def people_waiting(self) -> list[int]:
        return sorted({wf.person_id for wf in self.data.workflows.values() if wf.person_id is not None
                       and wf.current_state in (READY_STATE, S.SMS_SENDING)})

    async def count_waiting(self, *, person: int, exclude: str | None = None) -> int:
        return sum(1 for wf in self.data.workflows.values()
                   if wf.current_state in QUEUED_FOR_PHONE_STATES and wf.message_id != exclude
                   and wf.person_id == person)

    async def assign(self, phone: str, message_id: str) -> None:
        self.data.phones[phone] = message_id
        self.data.presented[phone] = self.tx.clock.now()

    async def presented_at(self, phone: str) -> datetime | None:
        return self.data.presented.get(phone) if self.data.phones.get(phone) else None

    async def unmark_reminded(self, message_id: str, reason: str) -> bool:
        wf = self.data.workflows.get(message_id)
        if wf is None or wf.current_state is not S.AWAITING_USER or wf.reminded_at is None:
            return False
        self.data.workflows[message_id] = replace(wf, reminded_at=None, updated_at=self.tx.clock.now())
        self.tx._audit(message_id, wf.current_state.value, wf.current_state.value, reason, None)
        return True

    async def by_code(self, code: str, *, person: int) -> Workflow | None:
        return next((wf for wf in self.data.workflows.values()
                     if wf.draft_code == code.upper() and wf.person_id == person), None)

    async def open_drafts(self, *, person: int) -> list[Workflow]:
        found = [wf for wf in self.data.workflows.values()
                 if wf.draft_code is not None and wf.person_id == person
                 and (wf.current_state is not S.USER_APPROVED or (
                     wf.send_at is not None and wf.send_attempted_at is None))]
        found.sort(key=lambda wf: (wf.email_received_at or datetime.max.replace(tzinfo=UTC),
                                   wf.created_at or datetime.max.replace(tzinfo=UTC)))
        return found

    async def requested(self, *, person: int) -> Workflow | None:
        waiting = sorted((at, m) for m, at in self.data.requested.items()
                         if self.data.workflows[m].current_state is READY_STATE
                         and self.data.workflows[m].person_id == person)
        return self.data.workflows[waiting[0][1]] if waiting else None

    async def request_presentation(self, message_id: str) -> bool:
        wf = self.data.workflows.get(message_id)
        if wf is None or wf.current_state is not READY_STATE:
            return False
        self.data.requested[message_id] = self.tx.clock.now()
        return True

    async def ask_confirmation(self, phone: str, message_ids: Sequence[str], until: datetime) -> None:
        self.data.confirmations[phone] = Question(list(message_ids), until, self.tx.clock.now())

    async def take_confirmation(self, phone: str) -> Question | None:
        question = self.data.confirmations.get(phone)
        if question is not None:
            self.data.confirmations[phone] = replace(question, ids=[])
        return question

    async def end_question(self, phone: str) -> None:
        self.data.confirmations.pop(phone, None)

    async def release(self, message_ids: Collection[str]) -> list[tuple[str, str]]:
        freed = [(phone, held) for phone, held in self.data.phones.items()
                 if held is not None and held in message_ids]
        for phone, _ in freed:
            self.data.phones[phone] = None
        return freed


class FakeSmsLedger(_Part):
    async def record(self, sms_id: str, phone: str, body: str, received_at: datetime | None,
                     *, outcome: str | None = None) -> bool:
        if sms_id in self.data.sms:
            return False
        self.data.sms[sms_id] = {"phone_number": phone, "body": body, "outcome": outcome,
                                 "handled": outcome is not None, "message_id": None}
        return True

    async def claim(self, sms_id: str, phone: str, body: str, received_at: datetime | None) -> bool:
        row = self.data.sms.setdefault(sms_id, {"phone_number": phone, "body": body, "outcome": None,
                                                "handled": False, "message_id": None})
        if row["handled"]:
            return False
        row["handled"] = True
        return True

    async def settle(self, sms_id: str, outcome: str, message_id: str | None) -> None:
        self.data.sms[sms_id].update(outcome=outcome, message_id=message_id)


class FakeTransaction:
    def __init__(self, data: _Data, clock: Clock) -> None:
        self.data = data
        self.clock = clock
        self.phone = FakePhoneSlot(self)
        self.sms = FakeSmsLedger(self)
        #: What this transaction's session holds (see FakeRepository.session).
        self.held: set[str] = set()
        self.held_sends: set[str] = set()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        before = copy.deepcopy(self.data)
        try:
            yield
        except BaseException:
            self.data.__dict__.update(before.__dict__)
            raise

    async def get(self, message_id: str, *, for_update: bool = False) -> Workflow | None:
        return self.data.workflows.get(message_id)

    def _audit(self, message_id: str, from_state: str | None, to_state: str, reason: str,
               error: str | None) -> None:
        entry = AuditEntry(len(self.data.audit) + 1, from_state, to_state, reason, error, self.clock.now())
        self.data.audit.append((message_id, entry))

    async def transition(self, message_id: str, expected: WorkflowState | Collection[WorkflowState],
                         new: WorkflowState, reason: str, *, error: str | None = None, **fields: Any) -> bool:
        sources = (expected,) if isinstance(expected, WorkflowState) else tuple(expected)
        for source in sources:
            check_transition(source, new)
        unknown = set(fields) - SETTABLE_COLUMNS
        if unknown:
            raise ValueError(f"not settable workflow columns: {sorted(unknown)}")
        wf = self.data.workflows.get(message_id)
        if wf is None or wf.current_state not in sources:
            return False
        previous = wf.current_state.value
        kept = {k: v for k, v in fields.items() if k in Workflow.__dataclass_fields__}  # as the row reads back
        if is_terminal(new):
            kept.setdefault("draft_code", None)  # a decided draft gives its code up
        self.data.requested.pop(message_id, None)
        self.data.workflows[message_id] = replace(wf, current_state=new, previous_state=previous,
                                                  updated_at=self.clock.now(), **_UNPARKED, **kept)
        self._audit(message_id, previous, new.value, reason, error)
        status = email_status_for(new)
        if status is not None:
            await self.set_email_status([message_id], status)
        await self.publish(WorkflowEvent(message_id=message_id, from_state=previous, to_state=new.value,
                                         reason=reason, error=error, at=self.clock.now()))
        if frees_the_phone(new):
            for phone, _ in await self.phone.release([message_id]):
                await self.publish(PhoneFreed(phone_number=phone, message_id=message_id, to_state=new.value))
        return True

    async def transition_many(self, message_ids: Sequence[str], expected: WorkflowState | Collection[WorkflowState],
                              new: WorkflowState, reason: str, *, error: str | None = None,
                              **fields: Any) -> list[str]:
        return [m for m in dict.fromkeys(message_ids)
                if await self.transition(m, expected, new, reason, error=error, **fields)]

    async def record_delivery(self, report: DeliveryReport) -> DeliveryRecorded:
        key = (report.sms_id, report.status.value)
        fresh = key not in self.data.deliveries
        if fresh:
            self.data.deliveries[key] = {"report": report, "message_id": None, "at": self.clock.now()}
        drafts = [wf for wf in self.data.workflows.values() if wf.sms_message_id == report.sms_id]
        if not drafts:
            return DeliveryRecorded(fresh=fresh)
        wf = max(drafts, key=lambda w: w.sms_sent_at or datetime.min.replace(tzinfo=UTC))
        for (sms_id, _), row in self.data.deliveries.items():
            if sms_id == report.sms_id:
                row["message_id"] = wf.message_id
        if fresh:
            wf = self._show_delivery(wf, report)
        return self._delivery_recorded(fresh, wf, report if report.status is Delivery.FAILED else None)

    async def adopt_deliveries(self, message_id: str, sms_id: str | None) -> DeliveryRecorded:
        wf = self.data.workflows.get(message_id)
        if wf is None:
            return DeliveryRecorded(fresh=False)
        wf = self.data.workflows[message_id] = replace(wf, sms_delivery_status=None, sms_delivery_at=None,
                                                       sms_delivery_error=None)
        rows = [row for (sid, _), row in self.data.deliveries.items() if sms_id is not None and sid == sms_id]
        failed = None
        for row in rows:
            row["message_id"] = message_id
            wf = self._show_delivery(wf, row["report"])
            failed = row["report"] if row["report"].status is Delivery.FAILED else failed
        return self._delivery_recorded(bool(rows), wf, failed)

    def _show_delivery(self, wf: Workflow, report: DeliveryReport) -> Workflow:
        if not moves_forward(wf.sms_delivery_status, report.status):
            return wf
        wf = self.data.workflows[wf.message_id] = replace(
            wf, sms_delivery_status=report.status.value, sms_delivery_at=report.at, sms_delivery_error=report.reason)
        self._audit(wf.message_id, wf.current_state.value, wf.current_state.value, audit_reason(report),
                    report.reason)
        return wf

    def _delivery_recorded(self, fresh: bool, wf: Workflow, failed: DeliveryReport | None) -> DeliveryRecorded:
        failures = [row["at"] for (_, status), row in self.data.deliveries.items()
                    if status == Delivery.FAILED.value and row["message_id"] == wf.message_id]
        return DeliveryRecorded(fresh=fresh, workflow=wf, failed=failed, failures=len(failures),
                                first_failure_at=min(failures, default=None))

    async def hold_presentation(self, message_id: str) -> bool:
        if message_id in self.data.presenting:
            return False
        self.data.presenting.add(message_id)
        self.held.add(message_id)
        return True

    async def presenter_gone(self, message_id: str) -> bool:
        return message_id not in self.data.presenting

    async def hold_send(self, message_id: str) -> bool:
        if message_id in self.data.sending and message_id not in self.held_sends:
            return False
        self.data.sending.add(message_id)
        self.held_sends.add(message_id)
        return True

    async def claim_send(self, message_id: str, reply_message_id: str, *, again: bool = False) -> bool:
        wf = self.data.workflows.get(message_id)
        if wf is None or wf.current_state is not S.USER_APPROVED or (wf.send_attempted_at is None) != (not again):
            return False
        self.data.workflows[message_id] = replace(wf, reply_message_id=reply_message_id,
                                                  send_attempted_at=self.clock.now(), updated_at=self.clock.now())
        reason = send_claim_reason(reply_message_id, again)
        self._audit(message_id, wf.current_state.value, wf.current_state.value, reason, None)
        return True

    async def park(self, message_id: str, state: WorkflowState, *, stage: str, peer: str, reason: str,
                   since: datetime, attempts: int, next_attempt_at: datetime, release_send: bool = False) -> bool:
        wf = self.data.workflows.get(message_id)
        if wf is None or wf.current_state is not state:
            return False
        self.data.workflows[message_id] = replace(
            wf, park_stage=stage, park_peer=peer, park_reason=reason, parked_since=since, park_attempts=attempts,
            next_attempt_at=next_attempt_at, send_attempted_at=None if release_send else wf.send_attempted_at,
            updated_at=self.clock.now(), lease_until=None)
        if attempts == 1:
            self._audit(message_id, state.value, state.value,
                        park_reason(reason, next_attempt_at), reason)
        return True

    async def note_outage(self, peer: str, person: int = 0) -> bool:
        self.data.outages.add(peer)
        if (peer, person) in self.data.told:
            return False
        self.data.told.add((peer, person))
        return True

    async def claim_due_parked(self, limit: int) -> list[Workflow]:
        now = self.clock.now()
        due = sorted((wf for wf in self.data.workflows.values() if wf.park_peer is not None
                      and wf.next_attempt_at is not None and wf.next_attempt_at <= now),
                     key=lambda wf: wf.next_attempt_at or now)[:limit]
        for wf in due:
            self.data.workflows[wf.message_id] = replace(wf, next_attempt_at=None)
        return [self.data.workflows[wf.message_id] for wf in due]

    async def end_outages(self) -> list[str]:
        parked = {wf.park_peer for wf in self.data.workflows.values()}
        ended = sorted(self.data.outages - parked)
        self.data.outages -= set(ended)
        holding = {(wf.park_peer, wf.person_id) for wf in self.data.workflows.values()}
        self.data.told = {(peer, who) for peer, who in self.data.told if (peer, who) in holding}
        return ended

    async def mark_reminded(self, message_id: str) -> bool:
        wf = self.data.workflows.get(message_id)
        if wf is None or wf.current_state is not S.AWAITING_USER or wf.reminded_at is not None:
            return False
        self.data.workflows[message_id] = replace(wf, reminded_at=self.clock.now(), updated_at=self.clock.now())
        self._audit(message_id, wf.current_state.value, wf.current_state.value, REMINDED, None)
        return True

    async def record_sent_reply(self, message_id: str, body: str) -> None:
        self.data.reply_drafts[message_id] = body

    async def claim_due_sends(self, limit: int) -> list[str]:
        now = self.clock.now()
        due = sorted((wf for wf in self.data.workflows.values()
                      if wf.current_state is S.USER_APPROVED and wf.send_at is not None and wf.send_at <= now
                      and wf.send_released_at is None and wf.send_attempted_at is None),
                     key=lambda wf: (wf.send_at or now, wf.message_id))[:limit]
        for wf in due:
            self.data.workflows[wf.message_id] = replace(wf, send_released_at=now, updated_at=now)
            self._audit(wf.message_id, wf.current_state.value, wf.current_state.value, SEND_DUE, None)
        return [wf.message_id for wf in due]

    async def create_workflow(self, email: Email, *, body_preview: str, reason: str) -> bool:
        if email.message_id in self.data.workflows:
            return False
        now = self.clock.now()
        self.data.workflows[email.message_id] = Workflow(
            message_id=email.message_id, current_state=S.PENDING, previous_state=None,
            email_subject=email.subject, email_from=email.from_address,
            email_to=", ".join(email.to_addresses or []), email_body_preview=body_preview,
            email_received_at=email.received_at, ai_reply_text=None, ai_reply_generated_at=None,
            sms_message_id=None, sms_sent_at=None, sms_phone_number=None, user_command=None,
            user_edit_instructions=None, user_responded_at=None, edit_iteration=0,
            created_at=now, updated_at=now)
        await self.give_codes([email.message_id])
        self._audit(email.message_id, None, S.PENDING.value, reason, None)
        await self.publish(WorkflowEvent(message_id=email.message_id, from_state=None, to_state=S.PENDING.value,
                                         reason=reason, at=now))
        return True

    async def give_codes(self, message_ids: Sequence[str]) -> list[str]:
        given = []
        for message_id in message_ids:  # each person's codes are their own
            wf = self.data.workflows[message_id]
            if wf.draft_code is not None:
                continue
            taken = [w.draft_code for w in self.data.workflows.values() if w.draft_code and
                     w.person_id == wf.person_id]
            if len(taken) >= capacity(MAX_DIGITS):
                continue  # every code of this person is in use: none for this one
            [code] = new_codes(1, taken, random.Random(len(taken)))
            self.data.workflows[message_id] = replace(wf, draft_code=code)
            given.append(code)
        return given

    async def give_missing_codes(self, limit: int) -> int:
        ids = [m for m, wf in self.data.workflows.items()
               if wf.draft_code is None and not is_terminal(wf.current_state)][:limit]
        await self.give_codes(ids)
        return len(ids)

    async def email(self, message_id: str) -> Email | None:
        return self.data.emails.get(message_id)

    async def set_email_status(self, message_ids: Collection[str], status: EmailStatus, *,
                               error: str | None = None) -> None:
        for message_id in message_ids:
            self.data.emails[message_id] = replace(self.data.emails[message_id], status=status.value)

    async def open_earlier_in_thread(self, message_ids: Collection[str],
                                     states: Collection[WorkflowState]) -> list[tuple[str, Workflow]]:
        emails = sorted(self.data.emails.values(), key=lambda e: e.received_at)
        newer = [e for e in emails if e.message_id in message_ids]
        return [(n.message_id, self.data.workflows[o.message_id]) for n in newer for o in emails
                if o.received_at < n.received_at and o.message_id in self.data.workflows
                and self.data.workflows[o.message_id].current_state in states
                and continues(n.thread_id, n.in_reply_to, o.message_id, o.thread_id)
                and same_sender(n.from_address, o.from_address)
                and self.data.workflows[o.message_id].person_id == self.data.workflows[n.message_id].person_id]

    async def record_superseded(self, message_ids: Collection[str], newer: str) -> None:
        self.data.superseded_by.update({m: newer for m in message_ids})
        if message_ids:
            wf = self.data.workflows[newer]
            self.data.workflows[newer] = replace(wf, supersedes=wf.supersedes + len(message_ids))

    async def earlier_emails(self, message_id: str, limit: int) -> list[Email]:
        chain: set[str] = set()
        frontier = {message_id}
        while frontier:
            frontier = {old for old, new in self.data.superseded_by.items() if new in frontier} - chain
            chain |= frontier
        found = sorted((self.data.emails[m] for m in chain), key=lambda e: e.received_at)
        return [replace(e, body_text=e.body_text and e.body_text[:EARLIER_CHARS + 1],
                        body_html=e.body_html and e.body_html[:EARLIER_HTML_CHARS])  # read bounded
                for e in (found[-limit:] if limit > 0 else [])]

    async def add_lesson_evidence(self, evidence: Evidence, kind: Literal["edit", "hand"] = "edit", *,
                                  person: int = 0) -> bool:
        if any(e.message_id == evidence.message_id and e.normalised == evidence.normalised
               for e, _ in self.data.evidence):
            return False
        self.data.evidence.append((evidence, kind))
        self.data.evidence_people.append(person)
        return True

    async def recent_lesson_evidence(self, limit: int, *, person: int = 0) -> list[Evidence]:
        mine = [e for (e, _), who in zip(self.data.evidence, self.data.evidence_people) if who == person]
        return list(reversed(mine))[:limit]

    async def lessons_for(self, sender: str, domain: str, *, person: int = 0) -> list[Lesson]:
        return [lesson for i, lesson in sorted(self.data.lessons.items())
                if self.data.lesson_people.get(i, 0) == person and (
                    lesson.scope is Scope.EVERYONE or (lesson.scope is Scope.SENDER and lesson.key == sender)
                    or (lesson.scope is Scope.DOMAIN and lesson.key == domain))]

    async def all_lessons(self, person: int | None = None) -> list[Lesson]:
        mine = (lesson for i, lesson in self.data.lessons.items()
                if person is None or self.data.lesson_people.get(i, 0) == person)
        return sorted(mine, key=lambda lesson: (lesson.scope.value, lesson.key is not None, lesson.key or "", lesson.id))

    async def lessons_by_id(self, ids: Collection[int]) -> list[Lesson]:
        return [self.data.lessons[i] for i in sorted(set(ids)) if i in self.data.lessons]

    async def save_lesson(self, learnt: Learnt, source: Literal["learnt", "remembered"], *,
                          person: int = 0) -> int:
        lesson_id = max(self.data.lessons, default=0) + 1
        self.data.lesson_people[lesson_id] = person
        self.data.lessons[lesson_id] = Lesson(lesson_id, learnt.scope, learnt.key, learnt.text, source=source)
        return lesson_id

    async def update_lesson(self, lesson_id: int, *, text: str | None = None, enabled: bool | None = None) -> bool:
        lesson = self.data.lessons.get(lesson_id)
        if lesson is None:
            return False
        self.data.lessons[lesson_id] = replace(lesson, text=lesson.text if text is None else text,
                                               enabled=lesson.enabled if enabled is None else enabled)
        return True

    async def delete_lesson(self, lesson_id: int) -> bool:
        return self.data.lessons.pop(lesson_id, None) is not None

    async def count_lesson_use(self, lesson_ids: Collection[int],
                               counter: Literal["times_applied", "times_edited_after"]) -> None:
        for i in set(lesson_ids):
            if i in self.data.lessons:
                lesson = self.data.lessons[i]
                self.data.lessons[i] = replace(lesson, **{counter: getattr(lesson, counter) + 1})

    async def publish(self, message: Publishable) -> None:
        self.data.outbox.append(message)

    async def publish_many(self, messages: Sequence[Publishable]) -> None:
        self.data.outbox.extend(messages)


class FakeSession:
    """Transactions that share what they hold until the session ends."""

    def __init__(self, repo: FakeRepository) -> None:
        self.repo = repo
        self.held: set[str] = set()
        self.held_sends: set[str] = set()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTransaction]:
        async with self.repo.transaction() as tx:
            tx.held_sends = self.held_sends  # a session's own lock is its own to take again
            try:
                yield tx
            finally:
                self.held |= tx.held


class FakeRepository:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.data = _Data()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTransaction]:
        before = copy.deepcopy(self.data)
        try:
            yield FakeTransaction(self.data, self.clock)
        except BaseException:
            self.data.__dict__.update(before.__dict__)
            raise

    @asynccontextmanager
    async def session(self) -> AsyncIterator[FakeSession]:
        session = FakeSession(self)
        try:
            yield session
        finally:
            self.data.presenting -= session.held
            self.data.sending -= session.held_sends

    async def transition(self, message_id: str, expected: WorkflowState | Collection[WorkflowState],
                         new: WorkflowState, reason: str, *, error: str | None = None, **fields: Any) -> bool:
        async with self.transaction() as tx:
            return await tx.transition(message_id, expected, new, reason, error=error, **fields)

    async def publish(self, message: Publishable) -> None:
        async with self.transaction() as tx:
            await tx.publish(message)

    async def get(self, message_id: str) -> Workflow | None:
        return self.data.workflows.get(message_id)

    async def audit_trail(self, message_id: str) -> Sequence[AuditEntry]:
        return [entry for mid, entry in self.data.audit if mid == message_id]

    async def due_timeouts(self, now: datetime) -> list[str]:
        due = [wf for wf in self.data.workflows.values()
               if wf.current_state is TIMES_OUT_FROM and wf.timeout_at is not None and wf.timeout_at <= now]
        return [wf.message_id for wf in sorted(due, key=lambda wf: wf.timeout_at or now)]

    async def due_reminders(self, presented_before: datetime) -> list[str]:
        due = [wf for wf in self.data.workflows.values()
               if wf.current_state is S.AWAITING_USER and wf.reminded_at is None
               and wf.sms_sent_at is not None and wf.sms_sent_at <= presented_before]
        return [wf.message_id for wf in sorted(due, key=lambda wf: wf.sms_sent_at or presented_before)]

    async def closable_emails(self, person: int = 0) -> list[tuple[str, datetime, str]]:
        found = [(wf.message_id, wf.email_received_at or wf.created_at or self.clock.now(),
                  wf.email_from or self.data.emails[wf.message_id].from_address)
                 for wf in self.data.workflows.values() if wf.current_state in CLOSABLE_STATES
                 and wf.person_id == person]
        return sorted(found, key=lambda pair: pair[1])

    async def own_replies(self, message_ids: Collection[str]) -> set[str]:
        sent = {wf.reply_message_id for wf in self.data.workflows.values()}
        return {m for m in message_ids if m in sent}

    # -------------------------------------------------------------- for tests

    def add_email(self, message_id: str, *, subject: str | None = "Lunch?",
                  from_address: str = "Ann Lee <ann@example.com>", received_at: datetime | None = None,
                  body_text: str | None = None, thread_id: str | None = None,
                  in_reply_to: str | None = None) -> None:
        self.data.emails[message_id] = Email(message_id=message_id, subject=subject, from_address=from_address,
                                             to_addresses=["me@example.com"],
                                             received_at=received_at or self.clock.now(),
                                             status=EmailStatus.ORCHESTRATING.value, body_text=body_text,
                                             thread_id=thread_id, in_reply_to=in_reply_to)

    async def start(self, message_id: str, *, person: int | None = 0, **email: Any) -> None:
        """An email taken on by the poller: its workflow in ``pending``, ``person``'s."""
        self.add_email(message_id, **email)
        async with self.transaction() as tx:
            assert await tx.create_workflow(self.data.emails[message_id], body_preview="Shall we?",
                                            reason="test")
        # The code is the person's, as when the poller routes the email.
        self.data.workflows[message_id] = replace(self.data.workflows[message_id], person_id=person, draft_code=None)
        async with self.transaction() as tx:
            await tx.give_codes([message_id])

    def published(self, kind: type[Publishable]) -> list[Any]:
        return [m for m in self.data.outbox if isinstance(m, kind)]

    def trail(self, message_id: str) -> list[tuple[str | None, str]]:
        return [(e.from_state, e.to_state) for mid, e in self.data.audit if mid == message_id]


if TYPE_CHECKING:
    from streams.storage.protocol import Repository

    def _conforms(repo: FakeRepository) -> Repository:
        """mypy checks here that the fake keeps the contract the stages are typed against."""
        return repo


# ------------------------------------------------------------------- peers


class FakeGenerator:
    """Answers with a draft naming the call; ``fail_with`` errors are raised first."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_with: list[Exception] = []

    async def generate(self, email_message_id: str, *, tone: str, max_length: int | None = None,
                       context_instructions: str | None = None) -> GeneratedDraft:
        self.calls.append({"email_message_id": email_message_id, "context_instructions": context_instructions,
                           "tone": tone, "max_length": max_length})
        if self.fail_with:
            raise self.fail_with.pop(0)
        text = f"Draft {len(self.calls)}"
        return GeneratedDraft(draft_id=f"d{len(self.calls)}", full_draft=text, length=len(text),
                              is_sms_friendly=True, tokens_used=1, model_version="fake",
                              generated_at=datetime.now(UTC))


class FakeSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failing = 0

    async def send(self, to: str, message: str) -> str | None:
        if self.failing:
            self.failing -= 1
            raise TransientError("SMS Gateway", "modem busy")
        self.sent.append((to, message))
        return f"sms-{len(self.sent)}"

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.sent]


class FakeMail:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse = False

    async def send(self, message: EmailMessage) -> None:
        if self.refuse:
            raise PermanentError("SMTP", "554 no")
        self.sent.append(message)


class FakeSentFolder:
    def __init__(self) -> None:
        self.message_ids: set[str] = set()
        self.checked: list[str] = []
        #: What :meth:`replies_since` finds (a day is not checked), and each call's (since, limit).
        self.replies: list[SentReply] = []
        self.searches: list[tuple[date, int]] = []
        self.fail_with: Exception | None = None

    async def contains(self, message_id: str) -> bool:
        self.checked.append(message_id)
        return message_id in self.message_ids

    async def replies_since(self, since: date, limit: int) -> list[SentReply]:
        self.searches.append((since, limit))
        if self.fail_with is not None:
            raise self.fail_with
        return self.replies[-limit:]
