"""What ``GET /health`` reports, and when it says 503.

Required dependencies are PostgreSQL and Kafka: without them nothing moves.
The peers (AI generator, SMS gateway) are reported but do not make the worker
unhealthy: restarting the orchestrator cannot fix them, and their failures are
retried and recorded per workflow.

Liveness, because faust workers are known to stall after broker outages: an
agent is *stalled* when its topics have consumer-group lag (read from the
broker) and it has finished no message for AGENT_STALL_TIMEOUT seconds; the
poller is stale when it has not completed a sweep for 3 x POLL_INTERVAL. Either
turns /health to 503 so a supervisor restarts the worker.

Cost: anyone who reaches the port may call /health, and a report is two
database queries and a call to each peer. A healthy report is kept
REPORT_CACHE_SECONDS and callers that arrive while one is being made share it,
so the work is at most one report a second however many ask (while unhealthy,
one report at a time); a second is far below anything the
report watches (stall and poll thresholds are tens of seconds). Who may read
the report beyond its status is the view's to say (server.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka.access import aiokafka_config
from streams.kafka.topics import full_name
from streams.peers.http import UNREACHABLE, PeerHttp
from streams.pipeline.generation import GenerationPool
from streams.pipeline.poller import EmailPoller
from streams.pipeline.progress import AgentProgress
from streams.pipeline.relay import OutboxRelay
from streams.settings import Settings
from streams.storage.repository import WorkflowRepository

LAG_CACHE_SECONDS = 5.0
REPORT_CACHE_SECONDS = 1.0


class HealthReporter:
    """Builds the /health report. Kafka lag is read with aiokafka clients that
    live as long as the worker: pure Python, they reconnect on their own after
    a broker outage (re-creating librdkafka clients with requests in flight
    crashed the process in testing)."""

    def __init__(self, settings: Settings, repo: WorkflowRepository, http: PeerHttp,
                 relay: OutboxRelay, poller: EmailPoller, generation: GenerationPool, progress: AgentProgress,
                 is_ready: Callable[[], bool]) -> None:
        self.settings = settings
        self.repo = repo
        self.http = http
        self.relay = relay
        self.poller = poller
        self.generation = generation
        self.progress = progress
        self.is_ready = is_ready
        self.started_at = time.time()
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._lag: tuple[float, dict[tuple[str, int], int]] | None = None
        self._report: tuple[float, dict[str, Any]] | None = None
        self._making: asyncio.Task[dict[str, Any]] | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            access = aiokafka_config(self.settings)
            admin = AIOKafkaAdminClient(client_id="orchestrator-health", **access)
            offsets = AIOKafkaConsumer(client_id="orchestrator-health", enable_auto_commit=False, **access)
            await admin.start()
            try:
                await offsets.start()
            except BaseException:
                await admin.close()
                raise
            self._admin, self._offsets = admin, offsets
        return self._admin, self._offsets

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
        if self._offsets is not None:
            await self._offsets.stop()

    async def _partition_lag(self) -> dict[tuple[str, int], int]:
        """Lag per (Kafka topic, partition) of this worker's consumer group."""
        s = self.settings
        admin, offsets = await self._clients()
        names = sorted({full_name(s.kafka_topic_prefix, t)
                        for sources in self.progress.topics.values() for t in sources})
        partitions = [AioTopicPartition(topic["topic"], p["partition"])
                      for topic in await admin.describe_topics(names) if topic["error_code"] == 0
                      for p in topic["partitions"]]
        if not partitions:
            return {}
        ends = await offsets.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(s.app_id, partitions=partitions)
        lag: dict[tuple[str, int], int] = {}
        for tp, end in ends.items():
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            lag[(tp.topic, tp.partition)] = max(0, end - position)
        return lag

    async def partition_lag(self) -> dict[tuple[str, int], int]:
        """:meth:`_partition_lag`, read at most every LAG_CACHE_SECONDS."""
        now = time.time()
        if self._lag is None or now - self._lag[0] > LAG_CACHE_SECONDS:
            self._lag = (now, await asyncio.wait_for(self._partition_lag(), timeout=5))
        return self._lag[1]

    async def topic_lag(self) -> dict[str, int]:
        """Lag per logical topic."""
        lag: dict[str, int] = {}
        for (topic, _), behind in (await self.partition_lag()).items():
            logical = topic.removeprefix(self.settings.kafka_topic_prefix)
            lag[logical] = lag.get(logical, 0) + behind
        return lag

    async def _peer(self, url: str) -> dict[str, Any]:
        try:
            status = await self.http.health(url.rstrip("/") + "/health", timeout=2.0)
            return {"ok": status == 200, "status_code": status}
        except UNREACHABLE as exc:
            return {"ok": False, "error": type(exc).__name__}

    async def _database(self) -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
        try:
            return {"ok": True}, await self.repo.count_by_state(timeout=3), await self.repo.parked(timeout=3)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return {"ok": False, "error": type(exc).__name__}, {}, {}

    async def _kafka(self) -> tuple[dict[str, Any], dict[str, Any]]:
        relay = self.relay
        s = self.settings
        try:
            lag = await self.topic_lag()
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}, {}
        now = time.time()
        agents: dict[str, Any] = {}
        for agent, sources in self.progress.topics.items():
            behind = sum(lag.get(t, 0) for t in sources)
            idle = now - self.progress.last[agent]
            stalled = behind > 0 and idle > s.agent_stall_timeout
            agents[agent] = {"ok": not stalled, "lag": behind, "seconds_since_progress": round(idle, 1)}
        kafka = {"ok": relay.last_error is None, "relay_error": relay.last_error, "published": relay.published}
        return kafka, agents

    async def cached_report(self) -> dict[str, Any]:
        """:meth:`report`, a healthy one kept REPORT_CACHE_SECONDS; concurrent
        callers share one. An unhealthy report is not kept: the next call looks
        again, so a recovery (a worker's start, a peer back) shows at once."""
        if (self._report is not None and self._report[1].get("status") == "ok"
                and time.monotonic() - self._report[0] < REPORT_CACHE_SECONDS):
            return self._report[1]
        if self._making is None or self._making.done():
            self._making = asyncio.create_task(self._make_report())
        # Shielded: a caller that goes away does not cancel the others' report.
        return await asyncio.shield(self._making)

    async def _make_report(self) -> dict[str, Any]:
        report = await self.report()
        self._report = (time.monotonic(), report)
        return report

    async def report(self) -> dict[str, Any]:
        s = self.settings
        (database, counts, parked), (kafka, agents), ai, sms = await asyncio.gather(
            self._database(), self._kafka(),
            self._peer(str(s.ai_reply_generator_url)), self._peer(str(s.sms_gateway_url)),
        )
        now = time.time()
        last_poll = self.poller.last_poll_at
        poll_age = now - (last_poll or self.started_at)
        poller = {"ok": poll_age <= 3 * s.poll_interval, "last_poll_at": last_poll,
                  "seconds_since_poll": round(poll_age, 1), "error": self.poller.last_error}
        pool = self.generation
        # Shown, not failed: a generator that pushes back lowers the limit on purpose.
        generation = {"in_flight": len(pool.in_flight), "limit": int(pool.limit),
                      "concurrency": pool.concurrency, "finished": pool.finished, "error": pool.last_error}
        required = [database, kafka, poller, *agents.values()]
        ready = self.is_ready()
        healthy = ready and all(c["ok"] for c in required)
        return {
            "status": "ok" if healthy else ("starting" if not ready else "unhealthy"),
            "uptime_seconds": round(now - self.started_at, 1),
            "last_poll_at": last_poll,
            "checks": {"database": database, "kafka": kafka, "poller": poller,
                       "ai_reply_generator": ai, "sms_gateway": sms},
            "agents": agents,
            "workflows": counts,
            # Held by a peer outage, each tried again on its own schedule (not unhealthy).
            "parked": parked,
            # This worker's generator calls: in flight now, the limit (lower
            # while the generator asks to slow down) and the configured ceiling.
            "generation": generation,
            # Shown, not failed: ALLOW_UNAUTHENTICATED=true is a deliberate choice.
            "security": {"unauthenticated": s.unauthenticated_exposure is not None,
                         "warning": s.unauthenticated_exposure},
        }
