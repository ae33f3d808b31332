"""Topic names and their creation.

Names are logical (``emails.pending``) plus KAFKA_TOPIC_PREFIX. Topics are
created explicitly at start with the AdminClient, with the configured partition
count and replication factor; an existing topic is left as it is.
"""

from __future__ import annotations

import logging
from typing import Final

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from confluent_kafka import KafkaError, KafkaException

EMAILS_PENDING: Final = "emails.pending"
EDITS_REQUESTED: Final = "edits.requested"
DRAFTS_READY: Final = "drafts.ready"
SMS_INBOUND: Final = "sms.inbound"
REPLIES_APPROVED: Final = "replies.approved"
WORKFLOW_EVENTS: Final = "workflow.events"
DEADLETTER: Final = "deadletter"

ALL: Final = (
    EMAILS_PENDING,
    EDITS_REQUESTED,
    DRAFTS_READY,
    SMS_INBOUND,
    REPLIES_APPROVED,
    WORKFLOW_EVENTS,
    DEADLETTER,
)

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
