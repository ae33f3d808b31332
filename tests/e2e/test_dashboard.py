"""The dashboard and the demo in a real browser (Debian's Chromium): what a
newcomer sees, and what an operator does with it. Screenshots of each page go
to test-artifacts/screenshots/."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from standins import free_port

from tests.support.browser import Browser
from tests.support.harness import ORCHESTRATOR, Pipeline, Worker, clean_env, eventually


@pytest.fixture
async def demo(database: str, endpoints: Any, topic_prefix: str, tmp_path: Path) -> AsyncIterator[str]:
    """``orchestrator demo`` as ``scripts/run`` starts it with nothing configured; yields its URL."""
    port = free_port()
    env = clean_env(**{
        "DATABASE_URL": database, "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": topic_prefix, "KAFKA_TOPIC_PARTITIONS": "2", "HOST": "127.0.0.1",
        "PORT": str(port), "DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "text"})
    worker = Worker(env, tmp_path / "demo.log")
    worker.proc = subprocess.Popen([str(ORCHESTRATOR), "demo"], env=env, cwd=tmp_path,
                                   stdout=(tmp_path / "demo.log").open("ab"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            async def healthy() -> bool:
                assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(healthy, 90, "the demo's /health = 200")
            home = await http.get("/")
            assert home.status_code == 200 and home.headers["Content-Type"].startswith("text/html")
            assert "DEMO" in home.text and "Nothing is sent anywhere" in home.text
        yield url
    finally:
        worker.stop()
        print(worker.log_tail(80))
    assert worker.problems([], {0}) == []


async def test_the_demo_from_a_sample_email_to_sent_with_an_edit(demo: str, tmp_path: Path) -> None:
    log = (tmp_path / "demo.log").read_text()
    assert "DEMO MODE" in log.splitlines()[0] + log.splitlines()[1]  # said first, loudly
    b = Browser(demo)
    try:
        await b.open("/demo/phone")
        await b.wait_for_text("1=Send 2=Edit 3=Ignore", 60)  # a sample's draft reached the phone
        await b.wait_for_text("DEMO", 10)
        await b.shot("demo-phone-first-draft")
        first = await b.script("return document.querySelector('#thread .out').innerText")
        samples = {"Lunch on Thursday?": "Maria Garcia", "Q3 report: numbers for slide 4": "Tom Becker",
                   "Can we move our call?": "Priya Shah"}
        [subject] = [s for s, sender in samples.items() if first.startswith(f"{sender}: {s}\nDraft: ")]

        await b.type_and_send("#sms-text", "2 make it shorter", "#send-sms")
        await b.wait_for_text("2 make it shorter")
        async def second_draft() -> bool:
            return bool(await b.script("return document.querySelectorAll('#thread .out').length >= 2"))
        await eventually(second_draft, 60, "the edited draft on the phone")
        await b.shot("demo-phone-edited-draft")

        await b.click("button.quick[value='1']")  # the quick answer
        # Its form's navigation back to the phone must end before we go elsewhere, or it
        # supersedes ours; the confirmation SMS on the phone says the reply went out.
        await b.wait_for_text(f"Sent to {samples[subject]}", 60)
        await b.open("/demo/sent")
        body = await b.wait_for_text(f"Re: {subject}", 60, reload=True)
        assert "In-Reply-To" in body and "demo.invalid" in body
        await b.shot("demo-sent-mail")

        await b.open("/")
        await b.wait_for_text("reply_sent", 30)
        await b.shot("dashboard-status")
        href = await b.script(f"return [...document.querySelectorAll('#finished a')]"
                              f".find(a => a.textContent === {subject!r})?.getAttribute('href')")
        assert href and href.startswith("/workflows/")
        await b.open(href)
        page = await b.wait_for_text("Timeline")
        assert "first draft" in page and 'edit 1: "make it shorter"' in page
        assert "awaiting_user → user_edit_requested" in page and "Sent " in page
        await b.shot("dashboard-workflow")
    finally:
        b.close()


async def test_a_failed_workflow_is_retried_from_its_button(pipeline: Pipeline) -> None:
    mid = await pipeline.new_email(subject="Retry me")
    pipeline.ai.unknown.add(mid)  # the generator answers 404: a permanent failure
    await pipeline.reaches(mid, "failed")
    pipeline.ai.unknown.clear()
    b = Browser(pipeline.base_url)
    try:
        await b.open("/")
        await b.wait_for_text("Retry me")
        assert "404" in await b.text()
        await b.shot("dashboard-failed")
        await b.click("#failed button.retry")
        await pipeline.reaches(mid, "awaiting_user")
        await b.wait_for_text("awaiting_user", reload=True)
        assert unquote(await b.url()).endswith("/workflows/" + mid)  # the workflow's page
        assert "retried from the dashboard" in await b.text()
        await b.shot("dashboard-retried")
    finally:
        b.close()


async def test_with_a_token_the_dashboard_asks_for_it_once(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(API_TOKEN="dash-token-Qw12")
    mid = await p.new_email(subject="Behind the sign-in")
    await p.reaches(mid, "awaiting_user")
    b = Browser(p.base_url)
    try:
        await b.open("/")
        assert "/signin?next=" in await b.url()
        await b.shot("dashboard-signin")
        await b.type_and_send("input[name=token]", "wrong", "form[action='/signin'] button")
        await b.wait_for_text("That is not the API token.", 20)
        await b.type_and_send("input[name=token]", "dash-token-Qw12", "form[action='/signin'] button")
        await b.wait_for_text("Behind the sign-in")
        await b.open("/workflows/" + quote(mid, safe=""))  # a workflow's page opens with the session
        page = await b.wait_for_text("Timeline", 20)
        assert "Behind the sign-in" in page and "API_TOKEN" not in page
        [cookie] = await b._do(b.driver.get_cookies)
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert "dash-token-Qw12" not in cookie["value"] and "dash-token-Qw12" not in await b.script(
            "return document.documentElement.outerHTML")
        # A state-changing form without its CSRF token is refused, even with the session.
        async with httpx.AsyncClient(base_url=p.base_url, cookies={cookie["name"]: cookie["value"]}) as http:
            refused = await http.post("/actions/retry", data={"message_id": mid})
            assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        async with httpx.AsyncClient(base_url=p.base_url, cookies={cookie["name"]: "9999999999.forged"}) as http:
            forged = await http.get("/", follow_redirects=False)
            assert forged.status_code == 303 and forged.headers["Location"].startswith("/signin")
    finally:
        b.close()


async def test_markup_in_a_subject_is_shown_as_text(pipeline: Pipeline) -> None:
    subject = "<script>window.pwned=1</script><b>bold?</b>"
    mid = await pipeline.new_email(subject=subject)
    await pipeline.reaches(mid, "awaiting_user")
    b = Browser(pipeline.base_url)
    try:
        await b.open("/")
        await b.wait_for_text(subject)
        assert await b.script("return window.pwned === undefined") is True
        # (one script call: the live part is replaced every few seconds)
        assert await b.script("return [...document.querySelectorAll('b')].some(b => b.textContent === 'bold?')") \
            is False
        await b.open("/workflows/" + quote(mid, safe=""))
        await b.wait_for_text(subject)
        assert await b.script("return window.pwned === undefined") is True
        await b.shot("dashboard-markup-as-text")
    finally:
        b.close()
