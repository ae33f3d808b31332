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
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from .topics import full_name

if TYPE_CHECKING:
    from .runtime import Runtime

LAG_CACHE_SECONDS = 5.0


@dataclass
class AgentProgress:
    """Per agent: its source topics and when it last finished a message."""

    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def register(self, agent: str, sources: tuple[str, ...]) -> None:
        self.topics[agent] = sources
        self.last[agent] = time.time()

    def tick(self, agent: str) -> None:
        self.last[agent] = time.time()


class HealthReporter:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._admin: AdminClient | None = None
        self._lag: tuple[float, dict[str, int]] | None = None

    @property
    def admin(self) -> AdminClient:
        # Built lazily and dropped after any error: a client that lived through
        # a broker outage can keep timing out after the broker is back.
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.runtime.settings.kafka_bootstrap_servers})
        return self._admin

    def _topic_lag_blocking(self) -> dict[str, int]:
        """Lag per logical topic for this worker's consumer group (blocks)."""
        s = self.runtime.settings
        names = {t for sources in self.runtime.progress.topics.values() for t in sources}
        metadata = self.admin.list_topics(timeout=5)
        partitions = [TopicPartition(full_name(s.kafka_topic_prefix, t), p)
                      for t in names if full_name(s.kafka_topic_prefix, t) in metadata.topics
                      for p in metadata.topics[full_name(s.kafka_topic_prefix, t)].partitions]
        if not partitions:
            return {}
        ends = {
            (tp.topic, tp.partition): info.offset
            for tp, fut in self.admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions},  # type: ignore[no-untyped-call]
                                                   request_timeout=5).items()
            for info in [fut.result(timeout=5)]
        }
        group = ConsumerGroupTopicPartitions(s.app_id, partitions)
        committed = {
            (tp.topic, tp.partition): max(tp.offset, 0)
            for tp in self.admin.list_consumer_group_offsets([group], request_timeout=5)[s.app_id]
            .result(timeout=5).topic_partitions
        }
        lag: dict[str, int] = {}
        for (topic, partition), end in ends.items():
            logical = topic.removeprefix(s.kafka_topic_prefix)
            lag[logical] = lag.get(logical, 0) + max(0, end - committed.get((topic, partition), 0))
        return lag

    async def topic_lag(self) -> dict[str, int]:
        now = time.time()
        if self._lag is None or now - self._lag[0] > LAG_CACHE_SECONDS:
            try:
                self._lag = (now, await asyncio.to_thread(self._topic_lag_blocking))
            except Exception:
                self._admin = None
                raise
        return self._lag[1]

    async def _peer(self, url: str) -> dict[str, Any]:
        try:
            response = await self.runtime.http.get(url.rstrip("/") + "/health", timeout=2.0)
            return {"ok": response.status_code == 200, "status_code": response.status_code}
        except httpx.HTTPError as exc:
            return {"ok": False, "error": type(exc).__name__}

    async def _database(self) -> tuple[dict[str, Any], dict[str, int]]:
        try:
            async with self.runtime.pool.connection(timeout=3) as conn:
                cur = await conn.execute(
                    "SELECT current_state, count(*) AS n FROM workflow_state GROUP BY current_state")
                counts = {str(r["current_state"]): int(r["n"]) for r in await cur.fetchall()}
            return {"ok": True}, counts
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return {"ok": False, "error": type(exc).__name__}, {}

    async def _kafka(self) -> tuple[dict[str, Any], dict[str, Any]]:
        relay = self.runtime.relay
        s = self.runtime.settings
        try:
            lag = await self.topic_lag()
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}, {}
        now = time.time()
        agents: dict[str, Any] = {}
        for agent, sources in self.runtime.progress.topics.items():
            behind = sum(lag.get(t, 0) for t in sources)
            idle = now - self.runtime.progress.last[agent]
            stalled = behind > 0 and idle > s.agent_stall_timeout
            agents[agent] = {"ok": not stalled, "lag": behind, "seconds_since_progress": round(idle, 1)}
        kafka = {"ok": relay.last_error is None, "relay_error": relay.last_error, "published": relay.published}
        return kafka, agents

    async def report(self) -> dict[str, Any]:
        rt = self.runtime
        s = rt.settings
        (database, counts), (kafka, agents), ai, sms = await asyncio.gather(
            self._database(), self._kafka(),
            self._peer(str(s.ai_reply_generator_url)), self._peer(str(s.sms_gateway_url)),
        )
        now = time.time()
        last_poll = rt.poller.last_poll_at
        poll_age = now - (last_poll or rt.started_at)
        poller = {"ok": poll_age <= 3 * s.poll_interval, "last_poll_at": last_poll,
                  "seconds_since_poll": round(poll_age, 1), "error": rt.poller.last_error}
        required = [database, kafka, poller, *agents.values()]
        healthy = rt.ready and all(c["ok"] for c in required)
        return {
            "status": "ok" if healthy else ("starting" if not rt.ready else "unhealthy"),
            "uptime_seconds": round(now - rt.started_at, 1),
            "last_poll_at": last_poll,
            "checks": {"database": database, "kafka": kafka, "poller": poller,
                       "ai_reply_generator": ai, "sms_gateway": sms},
            "agents": agents,
            "workflows": counts,
        }
