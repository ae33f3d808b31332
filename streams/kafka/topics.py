"""Topic names and their creation.

Names are logical (``emails.pending``, each message model names its own, see
:mod:`handlers.messages`) plus KAFKA_TOPIC_PREFIX. Topics are created
explicitly at start with the AdminClient, with the configured partition count
and replication factor; an existing topic is left as it is. On a cluster that
forbids creating topics (KAFKA_CREATE_TOPICS=false) they are only checked.
docs/topics.md describes each.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata, NewTopic  # type: ignore[attr-defined]

from handlers.messages import (
    DeadLetter,
    DraftReady,
    DraftUndelivered,
    EditRequested,
    EmailPending,
    InboundSms,
    PhoneFreed,
    ReplyApproved,
    TopicMessage,
    WorkflowEvent,
)
from streams.kafka.access import KafkaUnavailable, probe

if TYPE_CHECKING:
    from streams.settings import KafkaSettings

DEADLETTER: Final = DeadLetter.topic
EMAILS_PENDING: Final = EmailPending.topic
EDITS_REQUESTED: Final = EditRequested.topic
DRAFTS_READY: Final = DraftReady.topic
DRAFTS_UNDELIVERED: Final = DraftUndelivered.topic
SMS_INBOUND: Final = InboundSms.topic
REPLIES_APPROVED: Final = ReplyApproved.topic
PHONE_FREED: Final = PhoneFreed.topic
WORKFLOW_EVENTS: Final = WorkflowEvent.topic

#: The model of every topic's values (dead letters hold other topics' bytes).
MODELS: Final[dict[str, type[TopicMessage]]] = {
    model.topic: model
    for model in (EmailPending, EditRequested, DraftReady, InboundSms, ReplyApproved,
                  PhoneFreed, WorkflowEvent, DraftUndelivered)
}

ALL: Final = (*MODELS, DEADLETTER)

log = logging.getLogger(__name__)


def full_name(prefix: str, topic: str) -> str:
    """The Kafka topic name of a logical topic."""
    return f"{prefix}{topic}"


def topic_names(k: KafkaSettings) -> list[str]:
    """Every topic's Kafka name, in :data:`ALL` order."""
    return [full_name(k.kafka_topic_prefix, topic) for topic in ALL]


def missing_topics(k: KafkaSettings, metadata: ClusterMetadata) -> list[str]:
    """The topics' Kafka names that ``metadata`` (of the cluster) lacks."""
    return [name for name in topic_names(k) if name not in metadata.topics]


def ensure_topics(k: KafkaSettings, timeout: float = 30.0) -> list[str]:
    """Make sure every topic exists; return the names created.

    With KAFKA_CREATE_TOPICS (the default) missing topics are created with the
    configured partition count and replication factor, and an existing topic
    is left as it is; otherwise they are only looked for. Raises
    :class:`~streams.kafka.access.KafkaUnavailable` with one line saying what
    is wrong: the cluster cannot be reached or refuses the login, topics are
    missing, or the principal may not create them.
    """
    admin, metadata = probe(k, timeout)
    missing = missing_topics(k, metadata)
    if not missing:
        return []
    if not k.kafka_create_topics:
        raise KafkaUnavailable(f"missing topics {', '.join(missing)} (KAFKA_CREATE_TOPICS=false: create them, "
                               f"see the README's 'Deploying on your cluster')")
    wanted = [NewTopic(name, k.kafka_topic_partitions, k.kafka_replication_factor) for name in missing]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                raise KafkaUnavailable(f"not allowed to create topic {name} ({error.str()}); grant CREATE or "
                                       f"create the topics and set KAFKA_CREATE_TOPICS=false") from None
            raise KafkaUnavailable(f"cannot create topic {name}: {error.str()}") from None
    if created:
        log.info("created topics %s", ", ".join(created))
    return created
