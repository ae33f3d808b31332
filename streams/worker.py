"""``orchestrator worker``: topics, then the faust worker (agents, poller,
timers and web server in one process) until SIGTERM/SIGINT.

When Kafka cannot be used at start (a refused login, an untrusted
certificate, missing topics on a cluster that forbids creating them, no
broker), the worker says why in one log line and waits instead of exiting:
``GET /health`` answers 503 naming Kafka and the reason, so a supervisor and
a person see the same thing, and the worker goes on by itself once the
cluster lets it (a topic created, an ACL granted, the broker back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time

import faust
from aiohttp import web

from streams.app import create_app
from streams.kafka.access import LIBRDKAFKA_LOG, KafkaUnavailable
from streams.kafka.topics import ensure_topics
from streams.observability import logs
from streams.settings import Settings

log = logging.getLogger(__name__)

WAIT_FIRST, WAIT_MAX = 5.0, 60.0


def run_worker(settings: Settings) -> int:
    config = logs.configure(settings.log_format, settings.log_level, logs.secret_values(settings))
    if settings.log_level == "debug":
        LIBRDKAFKA_LOG.setLevel(logging.DEBUG)
    if settings.unauthenticated_exposure:
        log.warning("ALLOW_UNAUTHENTICATED=true: %s", settings.unauthenticated_exposure.split(";")[0])
    try:
        ensure_topics(settings)
    except KafkaUnavailable as exc:
        log.error("kafka: %s", exc)
        if not asyncio.run(wait_for_kafka(settings, str(exc))):
            return 0  # stopped as asked (SIGTERM/SIGINT) before Kafka let it start: a clean stop
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, logging_config=config)
    # At LOG_LEVEL warning or above faust adds a terminal spinner that sets the
    # root logger to DEBUG (every debug record in the process is made, then
    # spun) and writes cursor escapes into the log. Not for a service.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


async def wait_for_kafka(settings: Settings, reason: str) -> bool:
    """Serve a 503 ``/health`` naming ``reason`` and try Kafka again with
    backoff; True once it can be used, False when stopped (SIGTERM/SIGINT)."""
    since = time.time()
    state = {"reason": reason}

    async def unavailable(_: web.Request) -> web.Response:
        body = {"status": "unhealthy", "uptime_seconds": round(time.time() - since, 1),
                "checks": {"kafka": {"ok": False, "error": state["reason"]}}}
        return web.json_response(body, status=503, dumps=json.dumps)

    server = web.Application()
    server.router.add_route("*", "/{tail:.*}", unavailable)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    delay = WAIT_FIRST
    try:
        while True:
            try:
                await asyncio.wait_for(stopped.wait(), delay)
                log.info("stopped while waiting for Kafka")
                return False
            except TimeoutError:
                pass
            delay = min(WAIT_MAX, delay * 2)
            try:
                await asyncio.to_thread(ensure_topics, settings)
            except KafkaUnavailable as exc:
                if str(exc) != state["reason"]:
                    log.error("kafka: %s", exc)
                    state["reason"] = str(exc)
                continue
            log.info("kafka: reachable now; starting")
            return True
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
