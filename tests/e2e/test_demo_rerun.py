"""The demo run twice, as a newcomer does (``scripts/run``, stopped, ``scripts/run``
again), in a real browser (Debian's Chromium): the second run continues the
first without duplicates, its phone page shows the draft the dashboard says
is on the phone, and answering it there sends the reply (issue 18, item 7)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import psycopg

from standins import free_port

from tests.support.browser import Browser
from tests.support.harness import ORCHESTRATOR, Worker, clean_env, eventually


async def start_demo(worker: Worker, url: str) -> None:
    """``orchestrator demo`` as ``scripts/run`` starts it with nothing configured, until /health is 200."""
    with worker.log_path.open("ab") as log:
        worker.proc = subprocess.Popen([str(ORCHESTRATOR), "demo"], env=worker.env, cwd=worker.log_path.parent,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        async def healthy() -> bool:
            assert worker.running, worker.log_tail()
            try:
                return (await http.get("/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(healthy, 30, "the demo's /health = 200")


async def on_phone(b: Browser, timeout: float) -> str:
    """The subject of the draft the dashboard says is on the phone."""
    await b.open("/")

    async def subject() -> str | None:
        text = await b.script("return document.querySelector('#on-phone a')?.textContent || ''")
        return str(text) or None

    return await eventually(subject, timeout, "the dashboard naming a draft on the phone")


async def phone_shows(b: Browser, subject: str, timeout: float) -> str:
    """The phone page, once an SMS texted to it names ``subject``."""
    await b.open("/demo/phone")

    async def shown() -> str | None:
        texts = await b.script("return [...document.querySelectorAll('#thread .out')].map(e => e.innerText)")
        return next((str(t) for t in texts if subject in t), None)

    return await eventually(shown, timeout, f"the phone showing an SMS about {subject!r}")


async def test_a_second_demo_run_shows_the_phone_truthfully_and_adds_nothing(
        database: str, endpoints: Any, topic_prefix: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(**{
        "DATABASE_URL": database, "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": topic_prefix, "KAFKA_TOPIC_PARTITIONS": "2", "HOST": "127.0.0.1",
        "PORT": str(port), "DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "text"})
    worker = Worker(env, tmp_path / "demo.log")
    b = Browser(url)
    try:
        await start_demo(worker, url)
        first = await on_phone(b, 30)
        await phone_shows(b, first, 10)
        worker.stop()  # SIGTERM, as Ctrl-C: the run must end with status 0

        await start_demo(worker, url)
        with psycopg.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM processed_emails").fetchone() == (3,)

            def pending() -> int:
                row = conn.execute("SELECT count(*) FROM processed_emails WHERE status = 'pending'").fetchone()
                return int(row[0]) if row else -1

            async def all_taken_on() -> bool:
                return pending() == 0

            await eventually(all_taken_on, 15, "every sample email taken on")
        assert await on_phone(b, 10) == first  # the first run's draft is still the one on the phone
        total = await b.script("return document.querySelector('.count[data-state=all] b').textContent")
        assert total == "3", f"{total} workflows after the second run"
        await b.shot("demo-rerun-dashboard")

        await phone_shows(b, first, 10)  # the phone shows it, as texted in the first run
        body = await b.text()
        assert "No SMS yet" not in body
        await b.shot("demo-rerun-phone")
        await b.click("button.quick[value='1']")

        async def answered() -> bool:  # the form's navigation back to the phone has ended
            return bool(await b.script("return document.querySelectorAll('#thread .in').length === 1"))

        await eventually(answered, 10, "the answer on the phone")
        await b.open("/demo/sent")
        await b.wait_for_text(f"Re: {first}", 30, reload=True)
        await b.shot("demo-rerun-sent")
    finally:
        b.close()
        worker.stop()
        print(worker.log_tail(80))
    assert worker.problems([], {0}) == []
