"""The wiring: everything a worker holds (the pool, the peers, the stages) and
the loops that are not agents (poller, outbox relay, generation pool,
housekeeping sweep), built once and handed to whoever uses them."""

from __future__ import annotations

import asyncio
import logging

from handlers.clock import Clock, SystemClock
from handlers.senders import parse_patterns
from streams.peers.ai import AiReplyGenerator
from streams.peers.http import PeerHttp
from streams.peers.imap import SentFolder
from streams.peers.sms import SmsGateway
from streams.peers.smtp import SmtpSender
from streams.people.directory import Directory
from streams.pipeline.generation import GenerationPool
from streams.pipeline.housekeeping import Housekeeping
from streams.pipeline.poller import EmailPoller
from streams.pipeline.progress import AgentProgress
from streams.pipeline.relay import OutboxRelay, new_producer
from streams.settings import Settings
from streams.stages import Stages
from streams.storage.database import apply_schema, create_pool
from streams.storage.people import PeopleStore
from streams.storage.repository import WorkflowRepository
from streams.storage.stalled import StalledWorkflows
from streams.web.health import HealthReporter

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.pool = create_pool(settings.conninfo, settings.db_pool_max_size)
        self.repo = WorkflowRepository(self.pool, self.clock)
        self.people_store = PeopleStore(self.pool, self.clock)
        #: Every person of the deployment (docs/design.md, "Many people").
        self.people = Directory(self.people_store, settings)
        self.http = PeerHttp(settings.http_timeout, connect_timeout=5.0, retry_after_max=settings.retry_after_max)
        self.stages = Stages(
            settings=settings,
            repo=self.repo,
            ai=AiReplyGenerator(self.http, str(settings.ai_reply_generator_url)),
            sms=SmsGateway(self.http, str(settings.sms_gateway_url)),
            smtp=SmtpSender(
                settings.gmail_smtp_server, settings.gmail_smtp_port, settings.smtp_security_mode,
                settings.email_address, settings.email_password.get_secret_value(),
                settings.smtp_ca_file, settings.smtp_timeout,
            ),
            clock=self.clock,
            sent_folder=SentFolder(
                settings.imap_host, settings.imap_port, settings.email_address,
                settings.email_password.get_secret_value(), settings.imap_sent_folder,
                settings.imap_ca_file, settings.smtp_timeout,
            ) if settings.imap_host else None,
            people=self.people,
        )
        self.generation = GenerationPool(self.stages, self.repo, settings.conninfo,
                                         settings.generation_concurrency, settings.generation_lease)
        self.poller = EmailPoller(self.repo, settings.conninfo, settings.poll_interval,
                                  on_notify=settings.poll_on_notify, limit=settings.poll_limit,
                                  vip_patterns=parse_patterns(settings.vip_senders), router=self.people.route,
                                  people_vips=self.people.vips, shared=self.people.shared)
        self.relay = OutboxRelay(self.pool, settings.conninfo, new_producer(settings),
                                 settings.kafka_topic_prefix)
        self.housekeeping = Housekeeping(self.stages, settings.timeout_check_interval,
                                         StalledWorkflows(self.pool, self.clock), settings.stalled_grace)
        self.progress = AgentProgress()
        self.ready = False
        self.reporter = HealthReporter(settings, self.repo, self.http, self.relay, self.poller, self.generation,
                                       self.progress, is_ready=lambda: self.ready)
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        """Apply the schema, open the pool, start the loops."""
        try:
            await apply_schema(self.settings.conninfo)
        except Exception as exc:  # noqa: BLE001 - a read/write-only role may not run DDL
            log.warning("could not apply schema.sql (%s); assuming it is in place", exc)
        await self.pool.open(wait=True, timeout=60)
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="outbox-relay"),
            asyncio.create_task(self.poller.run(), name="poller"),
            asyncio.create_task(self.generation.run(), name="generation"),
            asyncio.create_task(self.housekeeping.run(), name="housekeeping"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stages.stop_telling()
        await self.reporter.close()
        await self.http.close()
        await self.pool.close()
