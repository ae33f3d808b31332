"""The faust application: agents, the web views, and the runtime's lifetime."""

from __future__ import annotations

import faust

from streams.kafka.access import faust_credentials
from streams.pipeline import agents
from streams.runtime import Runtime
from streams.settings import Settings
from streams.web import server as web


class OrchestratorApp(faust.App):
    """A faust App that opens the runtime before any agent starts and closes it last."""

    runtime: Runtime

    async def on_start(self) -> None:
        await super().on_start()
        await self.runtime.open()

    async def on_started(self) -> None:
        await super().on_started()
        self.runtime.ready = True

    async def on_stop(self) -> None:
        self.runtime.ready = False
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        await self.runtime.close()


def create_app(settings: Settings, runtime: Runtime | None = None) -> OrchestratorApp:
    runtime = runtime or Runtime(settings)
    servers = settings.kafka_bootstrap_servers.split(",")
    app = OrchestratorApp(
        settings.app_id,
        broker=[f"kafka://{s}" for s in servers],
        broker_credentials=faust_credentials(settings),
        datadir=str(settings.data_dir / settings.app_id),
        web_port=settings.port,
        web_bind=settings.host,
        web_host="localhost",
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        topic_allow_declare=False,
        # faust's leader election needs a topic of its own ("<id>-__assignor-__leader")
        # that it creates itself; nothing here uses a leader, and a cluster that
        # forbids creating topics must see only the ones docs/topics.md lists.
        topic_disable_leader=True,
        producer_acks=-1,
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 3),
        # faust's own pages expose internals: off.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
    app.runtime = runtime
    agents.register(app, runtime.stages, runtime.repo, runtime.progress, settings.kafka_topic_prefix)
    web.attach(app.web.web_app,  # type: ignore[attr-defined]
               settings, runtime.repo, runtime.stages, runtime.reporter, runtime.people_store, runtime.people)
    return app


