"""Shared fixtures: real Kafka and PostgreSQL, isolated per test.

The suite comes in three tiers, one folder each, and each test is marked with
its folder's name (``pytest -m unit`` is the same as ``pytest tests/unit``):

- ``tests/unit``: no service at all; the whole tier runs in seconds.
- ``tests/integration``: PostgreSQL (and, where named, Kafka, SMTP or IMAP),
  driven in-process.
- ``tests/e2e``: ``orchestrator worker`` processes, stand-in peers, browsers.

Every test that touches PostgreSQL gets a database of its own, cloned from a
template that already holds ``schema.sql``; every test that touches Kafka gets
a topic prefix (and so a consumer group) of its own.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from handlers.clock import OffsetClock
from streams.storage.database import apply_schema, create_pool
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.services import Endpoints, provide


TIERS = ("unit", "integration", "e2e")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true a skipped test fails the run, saying why it was skipped:
    in CI every test runs (an expected failure, xfail, is not a skip)."""
    report: pytest.TestReport = yield
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {_skip_reason(report.longrepr)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module skipped whole at collection fails the run under CI=true too."""
    report: pytest.CollectReport = yield
    if _in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {_skip_reason(report.longrepr)}"
    return report


def _skip_reason(longrepr: object) -> str:
    """The reason of a skip report's ``(path, line, "Skipped: why")``."""
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(config.rootpath / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)
        if tier == "unit" and "endpoints" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid}: a unit test uses no service (it asks for Kafka or PostgreSQL)")


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    with provide() as found:
        yield found


def with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def _admin(conninfo: str) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo, autocommit=True)


def _drop(conninfo: str, name: str) -> None:
    """Drop a test database; a backend we may not end (autovacuum) gets a moment to leave."""
    for attempt in range(20):
        try:
            with _admin(conninfo) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture(scope="session")
def template_database(endpoints: Endpoints) -> Iterator[str]:
    """A database holding schema.sql, cloned by :func:`database` for each test."""
    name = f"orch_tpl_{uuid.uuid4().hex[:10]}"
    with _admin(endpoints.database_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = with_dbname(endpoints.database_url, name)
    asyncio.run(apply_schema(conninfo))
    yield name
    _drop(endpoints.database_url, name)


@pytest.fixture
def empty_database(endpoints: Endpoints) -> Iterator[str]:
    """The conninfo of a new, empty database, dropped after the test."""
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    with _admin(endpoints.database_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_dbname(endpoints.database_url, name)
    _drop(endpoints.database_url, name)


@pytest.fixture
def database(endpoints: Endpoints, template_database: str) -> Iterator[str]:
    """The conninfo of a new database with the schema applied, dropped after the test."""
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    with _admin(endpoints.database_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield with_dbname(endpoints.database_url, name)
    _drop(endpoints.database_url, name)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[Pool]:
    p = create_pool(database, max_size=25)
    await p.open(wait=True)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def repo(pool: Pool, clock: OffsetClock) -> WorkflowRepository:
    return WorkflowRepository(pool, clock)


@pytest.fixture
async def make_stages(repo: WorkflowRepository, clock: OffsetClock, database: str) -> AsyncIterator[Any]:
    """In-process stages over the test database; peers unreachable unless given:
    ``make_stages(smtp=SmtpSender(...), ai_reply_generator_url=stub.url, retry_backoff_base=0.01)``."""
    from standins import free_port
    from streams.peers.ai import AiReplyGenerator
    from streams.peers.http import PeerHttp
    from streams.peers.sms import SmsGateway
    from streams.peers.smtp import SmtpSender
    from streams.settings import Settings
    from streams.stages import Stages

    http = PeerHttp(10.0)
    try:
        def make(smtp: SmtpSender | None = None, **settings: Any) -> Stages:
            nowhere = f"http://127.0.0.1:{free_port()}"
            settings = {"ai_reply_generator_url": nowhere, "sms_gateway_url": nowhere} | settings
            config = Settings(database_url=database, email_address="me@example.com",
                              email_password="pw", your_phone_number="+15551234567", **settings)
            return Stages(settings=config, repo=repo, clock=clock,
                          ai=AiReplyGenerator(http, str(config.ai_reply_generator_url)),
                          sms=SmsGateway(http, str(config.sms_gateway_url)),
                          smtp=smtp or SmtpSender("127.0.0.1", free_port(), "plain", "", ""))

        yield make
    finally:
        await http.close()


@pytest.fixture
async def make_pipeline(
    database: str, endpoints: Endpoints, topic_prefix: str, tmp_path: Any
) -> AsyncIterator[Any]:
    """Start a pipeline with extra settings: ``await make_pipeline(API_TOKEN="x")``."""
    from tests.support.harness import Pipeline

    started: list[Pipeline] = []

    async def make(**overrides: str) -> Pipeline:
        p = Pipeline(database, endpoints.kafka_bootstrap_servers, topic_prefix, tmp_path, **overrides)
        started.append(p)
        await p.start()
        return p

    yield make
    problems: list[str] = []
    for p in started:  # every one stopped, whatever the first says
        try:
            await p.stop()
        except AssertionError as exc:
            problems.append(str(exc))
    if started:
        from tests.support.harness import delete_topics

        await asyncio.to_thread(delete_topics, endpoints.kafka_bootstrap_servers, topic_prefix)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
async def pipeline(make_pipeline: Any) -> Any:
    """A running ``orchestrator worker`` with stub peers; see tests/support/harness.py."""
    return await make_pipeline()
