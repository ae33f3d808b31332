"""The documents that travel on Kafka topics: one frozen model per topic.

Plain JSON a person can read with kcat, each with ``schema_version``; no
framework envelope. Each model names its (logical) topic and its key, so a
message cannot be sent to the wrong place. Decoding failures raise
:class:`pydantic.ValidationError`, which the agents treat as a poison message
(dead-lettered, never retried). The topics are described in docs/topics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .workflow import Stage

SCHEMA_VERSION = 1

#: The most characters a text field the worker writes into a record keeps
#: (longer text is cut, ending in "…"), so that every record the worker
#: writes stays far below Kafka's default 1 MB limit (docs/topics.md, "Sizes").
TEXT_LIMIT: Final = 4000
#: The most characters of a record's key or an error that a dead letter's
#: text (its headers, ``dead_letter_log``) keeps; the bytes themselves are kept whole.
NOTE_LIMIT: Final = 2000
#: The longest SMS the webhook takes (docs/contracts.md §3); carried whole.
SMS_TEXT_LIMIT: Final = 5000
#: A reply written by hand on the dashboard, in characters: a long email's
#: worth, and a record that still fits any broker's default limit.
REPLY_TEXT_LIMIT: Final = 20_000


def capped(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with "…"."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _capped(text: str) -> str:
    return capped(text)


def _capped_or_none(text: str | None) -> str | None:
    return None if text is None else capped(text)


#: A text field the worker writes from what it was given (a subject, the
#: person's instructions, an error): bounded by :data:`TEXT_LIMIT`.
BoundedText = Annotated[str, AfterValidator(_capped)]
OptionalBoundedText = Annotated[str | None, AfterValidator(_capped_or_none)]


def printable(data: bytes | str | None, limit: int = NOTE_LIMIT) -> str | None:
    """A text form of any bytes that PostgreSQL, JSON and a log line accept:
    UTF-8 where it is UTF-8, a backslash escape (``\\xNN``) for the bytes
    that are not, for NUL and for lone surrogates, cut to ``limit``
    characters. For what describes a record (its key in ``dead_letter_log``,
    an error message); never for the record's own bytes, kept as they are."""
    if data is None:
        return None
    if isinstance(data, str):
        data = data.encode("utf-8", "backslashreplace")
    return capped(data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00"), limit)


class TopicMessage(BaseModel):
    """Base of every topic message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    #: The logical topic (without KAFKA_TOPIC_PREFIX) this message travels on.
    topic: ClassVar[str]

    schema_version: int = SCHEMA_VERSION

    @property
    def record_key(self) -> str | None:
        """The Kafka record key: the email's message_id unless a model says otherwise."""
        return getattr(self, "message_id", None)

    def to_json(self) -> str:
        return self.model_dump_json()


class EmailPending(TopicMessage):
    """``emails.pending``: an email the poller took on (key: message_id)."""

    topic: ClassVar[str] = "emails.pending"

    message_id: str = Field(min_length=1)
    from_address: OptionalBoundedText = None
    subject: OptionalBoundedText = None
    received_at: datetime | None = None
    #: Whose email it is (``workflow_state.person_id``; 0, the default person,
    #: when a message from before people leaves it out).
    person_id: int = Field(default=0, ge=0)


class EditRequested(TopicMessage):
    """``edits.requested``: the person asked for a new draft (key: message_id)."""

    topic: ClassVar[str] = "edits.requested"

    message_id: str = Field(min_length=1)
    instructions: BoundedText = Field(min_length=1)
    iteration: int = Field(ge=1)


class DraftReady(TopicMessage):
    """``drafts.ready``: a draft waits to be presented (key: message_id)."""

    topic: ClassVar[str] = "drafts.ready"

    message_id: str = Field(min_length=1)
    iteration: int = Field(ge=0)


class InboundSms(TopicMessage):
    """``sms.inbound``: an SMS from the person's phone (key: phone number, so
    one person's commands are handled in the order sent)."""

    topic: ClassVar[str] = "sms.inbound"

    sms_id: str = Field(min_length=1)
    phone_number: str = Field(min_length=1)
    #: Never cut: a cut answer could change meaning ("1" and blanks would read
    #: "1 …"). The webhook refuses a longer one (handlers/inbound.py).
    text: str = Field(max_length=SMS_TEXT_LIMIT)
    received_at: datetime | None = None
    #: Where the answer was given: the person's phone, or the dashboard (a
    #: second phone; docs/design.md, "Every answer names its draft").
    source: Literal["sms", "dashboard"] = "sms"
    #: The draft the dashboard acted on (an SMS names its draft by code, or
    #: means the one texted most recently).
    message_id: str | None = Field(default=None, min_length=1)
    #: The edit iteration the dashboard showed: an action on a draft that has
    #: changed since is not applied.
    seen_iteration: int | None = Field(default=None, ge=0)
    #: A reply the person wrote by hand on the dashboard: approved and sent
    #: exactly as typed (``text`` is then ``1``).
    reply_text: str | None = Field(default=None, min_length=1, max_length=REPLY_TEXT_LIMIT)

    @property
    def record_key(self) -> str:
        return self.phone_number


class ReplyApproved(TopicMessage):
    """``replies.approved``: the person approved the draft (key: message_id)."""

    topic: ClassVar[str] = "replies.approved"

    message_id: str = Field(min_length=1)


class WorkflowEvent(TopicMessage):
    """``workflow.events``: one won state transition (key: message_id)."""

    topic: ClassVar[str] = "workflow.events"

    message_id: str
    from_state: str | None
    to_state: str
    reason: BoundedText
    error: OptionalBoundedText = None
    at: datetime


class PhoneFreed(TopicMessage):
    """``phone.freed``: the draft on the person's phone reached a decision, so
    the next waiting draft may be presented (key: the phone number)."""

    topic: ClassVar[str] = "phone.freed"

    phone_number: str = Field(min_length=1)
    message_id: str = Field(min_length=1)
    to_state: str

    @property
    def record_key(self) -> str:
        return self.phone_number


class DraftUndelivered(TopicMessage):
    """``drafts.undelivered``: the gateway reported ``sms:failed`` for the draft
    SMS on the person's phone, so it is withdrawn and presented again or parked
    (key: message_id; docs/design.md, "Side effects happen once")."""

    topic: ClassVar[str] = "drafts.undelivered"

    message_id: str = Field(min_length=1)
    #: The gateway's id of the draft SMS that failed: only that presentation is withdrawn.
    sms_message_id: str = Field(min_length=1)
    reason: OptionalBoundedText = None
    #: Failure reports for this workflow's drafts so far, and when the first came:
    #: the re-presentations are parked under the rules of an outage (RETRY_DEADLINE).
    failures: int = Field(default=1, ge=1)
    first_failure_at: datetime | None = None


#: Where a dead letter's headers say what happened: Kafka Connect's names for
#: its dead-letter queues, so tools that read those read these.
DLQ_HEADER = "__connect.errors."

#: ``unpublishable``: an outbox row Kafka refused for good (too large, not
#: allowed, invalid), set aside by the relay (docs/topics.md, "Dead letters").
DeadLetterKind = Literal["poison", "permanent", "exhausted", "unpublishable"]


@dataclass(frozen=True)
class DeadLetter:
    """``deadletter``: a record the orchestrator gave up on. The record keeps
    the original key and value bytes; its headers (:meth:`headers`) name the
    original topic, partition and offset, the stage, the attempts and the
    error. A stage that failed without a record in hand (a draft generated
    from the database, a sweep) writes the message that would start the stage
    again, with no partition or offset."""

    topic: ClassVar[str] = "deadletter"

    source_topic: str  # logical, without KAFKA_TOPIC_PREFIX
    key: bytes | None
    value: bytes
    stage: str
    kind: DeadLetterKind
    attempts: int
    error_class: str
    error_message: str
    partition: int | None = None
    offset: int | None = None

    @property
    def record_key(self) -> str | None:
        """The original key as text that any store takes (:func:`printable`);
        the record itself keeps the bytes."""
        return printable(self.key)

    def headers(self, prefix: str) -> dict[str, str]:
        """The record's headers; ``prefix`` is KAFKA_TOPIC_PREFIX (the topic is named as Kafka knows it).
        Text only, whatever the error said (:func:`printable`)."""
        found = {"topic": f"{prefix}{self.source_topic}", "partition": self.partition, "offset": self.offset,
                 "stage": self.stage, "attempts": self.attempts, "kind": self.kind,
                 "exception.class.name": printable(self.error_class, 200),
                 "exception.message": printable(self.error_message)}
        return {DLQ_HEADER + name: str(value) for name, value in found.items() if value is not None}


#: What the repository's ``publish`` takes: a topic message, or a dead letter.
Publishable = TopicMessage | DeadLetter


@dataclass(frozen=True)
class SourceRecord:
    """A record as it came off a topic: what a dead letter keeps. The message
    loop hands it to the stage it sets going, so that a stage that gives up
    dead-letters the very record (docs/topics.md, ``deadletter``)."""

    topic: str  # logical
    key: bytes | None
    value: bytes
    partition: int | None = None
    offset: int | None = None
    headers: Mapping[str, bytes] | None = None

    def dead_letter(self, stage: Stage, kind: DeadLetterKind, error: Exception, attempts: int = 1,
                    *, cause: Exception | None = None) -> DeadLetter:
        """This record given up on at ``stage``; ``cause`` (the last of several
        attempts' errors, when there were several) names the error class."""
        return DeadLetter(source_topic=self.topic, key=self.key, value=self.value, stage=stage.value,
                          kind=kind, attempts=attempts, error_class=type(cause or error).__name__,
                          error_message=str(error), partition=self.partition, offset=self.offset)


#: The topic whose message sets each stage going (a retry publishes there).
STAGE_TOPIC: Final[Mapping[Stage, str]] = {
    Stage.DRAFT: EmailPending.topic,
    Stage.NOTIFY: DraftReady.topic,
    Stage.COMMAND: InboundSms.topic,
    Stage.SEND: ReplyApproved.topic,
}
