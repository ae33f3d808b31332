"""Prometheus metrics, served at ``GET /metrics`` with prometheus_client.

All names start with ``orchestrator_``. Counters and histograms are updated
where things happen (after a transaction commits, for what a transaction
did); gauges that describe the database or the cluster (workflows by state,
the oldest unanswered draft, the outbox, consumer lag) are read when scraped,
so every worker of a group reports the same figures for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from handlers.messages import DeadLetter, Publishable, WorkflowEvent
from handlers.workflow import WorkflowState

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

TRANSITIONS = Counter("orchestrator_transitions", "Workflow state transitions, by from and to state",
                      ["from_state", "to_state"], registry=REGISTRY)
STAGE_SECONDS = Histogram("orchestrator_stage_seconds", "Time spent handling one message or draft, by stage",
                          ["stage"], registry=REGISTRY,
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
PEER_SECONDS = Histogram("orchestrator_peer_request_seconds",
                         "Peer calls (AI generator, SMS gateway, SMTP) by peer and outcome",
                         ["peer", "outcome"], registry=REGISTRY,
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
DEAD_LETTERS = Counter("orchestrator_dead_letters", "Records dead-lettered, by stage and kind",
                       ["stage", "kind"], registry=REGISTRY)
WORKFLOWS = Gauge("orchestrator_workflows", "Workflows by current state", ["state"], registry=REGISTRY)
OLDEST_AWAITING = Gauge("orchestrator_oldest_awaiting_answer_seconds",
                        "Age of the oldest draft waiting for the person's answer (0 when none)",
                        registry=REGISTRY)
OUTBOX_ROWS = Gauge("orchestrator_outbox_rows", "Records waiting in the outbox to be published",
                    registry=REGISTRY)
OUTBOX_OLDEST = Gauge("orchestrator_outbox_oldest_seconds", "Age of the oldest outbox row (0 when empty)",
                      registry=REGISTRY)
CONSUMER_LAG = Gauge("orchestrator_consumer_lag", "Records not yet consumed by the group, by topic and partition",
                     ["topic", "partition"], registry=REGISTRY)
GENERATIONS_IN_FLIGHT = Gauge("orchestrator_generations_in_flight",
                              "Generator calls this worker has in flight", registry=REGISTRY)
GENERATION_LIMIT = Gauge("orchestrator_generation_limit",
                         "How many generator calls this worker allows in flight now (GENERATION_CONCURRENCY, "
                         "lowered while the generator asks to slow down)", registry=REGISTRY)
PUBLISHED = Counter("orchestrator_outbox_published", "Records the outbox relay published", registry=REGISTRY)
UNPUBLISHABLE = Counter("orchestrator_outbox_unpublishable",
                        "Outbox records Kafka refused for good (too large, invalid, not allowed), set aside in"
                        " dead_letter_log, by topic and Kafka error", ["topic", "error"], registry=REGISTRY)


@contextmanager
def peer_call(peer: str) -> Iterator[dict[str, str]]:
    """Time a call to ``peer`` (its display name: "SMS Gateway" is labelled
    sms_gateway); the block sets ``outcome`` in the yielded dict (default: error)."""
    label = peer.lower().replace(" ", "_")
    result = {"outcome": "error"}
    started = time.perf_counter()
    try:
        yield result
    finally:
        PEER_SECONDS.labels(label, result["outcome"]).observe(time.perf_counter() - started)


def committed(queued: Iterable[Publishable]) -> None:
    """Count what a committed transaction did: its transitions and dead letters."""
    for message in queued:
        if isinstance(message, WorkflowEvent):
            TRANSITIONS.labels(message.from_state or "none", message.to_state).inc()
        elif isinstance(message, DeadLetter):
            DEAD_LETTERS.labels(message.stage, message.kind).inc()


def set_database_view(counts: Mapping[str, int], oldest_awaiting: float | None, outbox_rows: int,
                      outbox_oldest: float | None) -> None:
    for state in WorkflowState:
        WORKFLOWS.labels(state.value).set(counts.get(state.value, 0))
    OLDEST_AWAITING.set(oldest_awaiting or 0)
    OUTBOX_ROWS.set(outbox_rows)
    OUTBOX_OLDEST.set(outbox_oldest or 0)


def set_lag(lag: Mapping[tuple[str, int], int]) -> None:
    CONSUMER_LAG.clear()
    for (topic, partition), behind in lag.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(behind)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
