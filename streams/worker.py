"""``orchestrator worker``: topics, then the faust worker (agents, poller,
timers and web server in one process) until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import sys

import faust
from confluent_kafka import KafkaException

from .app import create_app
from .settings import Settings
from .topics import create_topics

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    if settings.unauthenticated_exposure:
        log.warning("ALLOW_UNAUTHENTICATED=true: %s", settings.unauthenticated_exposure.split(";")[0])
    try:
        create_topics(settings.kafka_bootstrap_servers, settings.kafka_topic_prefix,
                      settings.kafka_topic_partitions, settings.kafka_replication_factor)
    except KafkaException as exc:
        print(f"orchestrator: cannot create topics on KAFKA_BOOTSTRAP_SERVERS="
              f"{settings.kafka_bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0
