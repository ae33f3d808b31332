"""Topic names and their creation.

Names are logical (``emails.pending``, each message model names its own, see
:mod:`handlers.messages`) plus KAFKA_TOPIC_PREFIX. Topics are created
explicitly at start with the AdminClient, with the configured partition count
and replication factor; an existing topic is left as it is. docs/topics.md
describes each.
"""

from __future__ import annotations

import logging
from typing import Final

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from confluent_kafka import KafkaError, KafkaException

from handlers.messages import (
    DeadLetter,
    DraftReady,
    EditRequested,
    EmailPending,
    InboundSms,
    PhoneFreed,
    ReplyApproved,
    TopicMessage,
    WorkflowEvent,
)
from handlers.workflow import Stage

EMAILS_PENDING: Final = EmailPending.topic
EDITS_REQUESTED: Final = EditRequested.topic
DRAFTS_READY: Final = DraftReady.topic
SMS_INBOUND: Final = InboundSms.topic
REPLIES_APPROVED: Final = ReplyApproved.topic
PHONE_FREED: Final = PhoneFreed.topic
WORKFLOW_EVENTS: Final = WorkflowEvent.topic
DEADLETTER: Final = DeadLetter.topic

#: The model of every topic's values.
MODELS: Final[dict[str, type[TopicMessage]]] = {
    model.topic: model
    for model in (EmailPending, EditRequested, DraftReady, InboundSms, ReplyApproved,
                  PhoneFreed, WorkflowEvent, DeadLetter)
}

ALL: Final = tuple(MODELS)

#: The topic whose message sets each stage going (a retry publishes there).
STAGE_TOPIC: Final[dict[Stage, str]] = {
    Stage.DRAFT: EMAILS_PENDING,
    Stage.NOTIFY: DRAFTS_READY,
    Stage.COMMAND: SMS_INBOUND,
    Stage.SEND: REPLIES_APPROVED,
}

log = logging.getLogger(__name__)


def full_name(prefix: str, topic: str) -> str:
    """The Kafka topic name of a logical topic."""
    return f"{prefix}{topic}"


def create_topics(
    bootstrap_servers: str,
    prefix: str,
    partitions: int,
    replication_factor: int,
    timeout: float = 30.0,
) -> list[str]:
    """Create every topic that does not exist yet; return the names created.

    Blocks up to ``timeout`` seconds. Raises :class:`KafkaException` when the
    cluster cannot be reached or refuses a creation for another reason than
    the topic already existing.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    wanted = [
        NewTopic(full_name(prefix, topic), partitions, replication_factor) for topic in ALL
    ]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics %s", ", ".join(created))
    return created
