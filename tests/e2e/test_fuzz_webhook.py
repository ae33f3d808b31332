"""Fuzz (issue 17): raw requests to the live worker over a real socket, beyond
what schemathesis sends (tests/e2e/test_openapi_fuzz.py): webhook bodies of
any bytes with any Content-Type, signature headers of any text, bodies cut
into several TCP pieces, Authorization and Cookie headers of any text on the
API and dashboard paths, and sign-in redirects.

Every answer is below 500 and says why in JSON or HTML (never a traceback),
no example makes the worker log an ERROR, a request that is not declared
``application/json`` never acts, a well-signed body is taken however it is
cut, and after the campaign a real signed ``1`` still sends the reply.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from handlers.inbound import expected_signature

from tests.support.fuzzing import ANY_CHAR, LogWatch, describe, RawResponse, json_values, raw_request, says_why
from tests.support.harness import PHONE, Pipeline

KEY = "fuzz-signing-key"
TOKEN = "fuzz-api-token"
WEBHOOK = "/orchestrator/sms-response"
LIMIT = 16 * 1024

FUZZ = settings(max_examples=250, deadline=20_000, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

#: Text a header value can carry in HTTP/1.1 (no CR, LF, NUL or other control
#: character, which would break the request itself): anything else, non-ASCII included.
HEADER_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=80)
def as_bytes(text: str) -> st.SearchStrategy[bytes]:
    """A header value's bytes: UTF-8, or Latin-1 (HTTP's obs-text: bytes that are not UTF-8)."""
    return st.sampled_from(["utf-8", "latin-1"]).map(lambda charset: text.encode(charset, "replace"))


#: X-Signature values: any text, and 64 near-hex characters with non-ASCII ones among them.
NEAR_HEX = "0123456789abcdefABCDEF \u00e9\u0661\uff10\u2028\U0001f600"
SIGNATURES = st.one_of(HEADER_TEXT, st.text(st.sampled_from(NEAR_HEX), min_size=60, max_size=70))
CONTENT_TYPES = st.one_of(
    st.just("application/json"),
    st.sampled_from(["application/json; charset=utf-8", "APPLICATION/JSON", "application/cloudevents+json",
                     "application/json; charset=latin-1", "application/json;;", "application/json; x=\u00e9"]),
    st.sampled_from(["text/plain", "text/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                     "", "application/", "*/*", "application/json, text/plain", "text/html+json", "application/jsonx"]),
    st.none(), HEADER_TEXT)


def json_declared(content_type: str | None) -> bool:
    """Whether a Content-Type declares JSON (docs/contracts.md §3)."""
    if content_type is None:
        return False
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def signed(body: bytes, key: str = KEY) -> list[tuple[bytes, bytes]]:
    stamp = str(int(time.time()))
    return [(b"X-Timestamp", stamp.encode()), (b"X-Signature", expected_signature(key.encode(), body, stamp).encode())]


@st.composite
def webhook_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A webhook request: its body, Content-Type, signature headers and TCP pieces."""
    kind = draw(st.sampled_from(["valid", "json", "bytes", "mangled"]))
    if kind == "valid":  # the gateway's own body, of any text, from any number
        phone = draw(st.one_of(st.just(PHONE), st.sampled_from(["+15550000000", "15551234567", "tel:+15551234567",
                                                                "(555) 123-4567", "\u200e+15551234567"]),
                               st.text(ANY_CHAR, min_size=1, max_size=20)))
        text = draw(st.text(ANY_CHAR, max_size=2000).filter(lambda t: t.strip() not in {"1", "2", "3"}))
        body = json.dumps(_body(text, phone)).encode()
    elif kind == "json":
        body = json.dumps(draw(json_values(20))).encode()
    elif kind == "mangled":  # the right shape with fields of any type
        good = _body("hello", PHONE)
        good["payload"].update(draw(st.dictionaries(st.sampled_from(list(good["payload"]) + ["sender"]),
                                                    json_values(3), max_size=3)))
        good.update(draw(st.dictionaries(st.sampled_from(["event", "id", "payload", "deviceId"]),
                                         json_values(3), max_size=2)))
        body = json.dumps(good).encode()
    else:
        body = draw(st.one_of(st.binary(max_size=2000), st.sampled_from([b"", b"{", b"[]", b"null", b"\xff\xfe{}"])))
    # The gateway's own requests half the time: signed, declared JSON, cut anywhere.
    as_sent = kind == "valid" and draw(st.booleans())
    signature = "signed" if as_sent else draw(st.sampled_from(["signed", "signed", "none", "any", "any"]))
    headers: list[tuple[bytes, bytes]] = signed(body) if signature == "signed" else []
    if signature == "any":  # a timestamp in the window, mostly, so that the signature itself is read
        now = str(int(time.time()))
        stamp = draw(st.one_of(st.just(now), st.just(now), HEADER_TEXT, st.just(f" {now}"), st.just("\u0661" * 10)))
        headers = [(b"X-Timestamp", draw(as_bytes(stamp))), (b"X-Signature", draw(as_bytes(draw(SIGNATURES))))]
    content_type = "application/json" if as_sent else draw(CONTENT_TYPES)
    if content_type is not None:
        headers.append((b"Content-Type", draw(as_bytes(content_type))))
    size = len(body) + 200
    pieces = draw(st.lists(st.integers(1, size), max_size=4))
    return {"kind": kind, "body": body, "headers": headers, "content_type": content_type,
            "signature": signature, "pieces": pieces}


def _body(text: str, phone: str) -> dict[str, Any]:
    return {"deviceId": "dev-1", "event": "sms:received", "id": f"evt-{uuid.uuid4().hex[:10]}", "webhookId": "wh-1",
            "payload": {"messageId": f"m-{uuid.uuid4().hex[:10]}", "message": text, "phoneNumber": phone,
                        "simNumber": 1, "receivedAt": "2026-11-24T10:15:00.000+00:00"}}


PATHS = ["/", "/workflows/%3Cx%40mail.example%3E", "/dead-letters", "/workflow/status", "/workflow/pending",
         "/workflow/failed", "/workflow/%3Cx%40mail.example%3E", "/health", "/metrics", "/signin",
         "/openapi.json", "/drafts/%3Cx%40mail.example%3E?t=abc", "/no/such/page"]
POSTS = ["/actions/retry", "/workflow/%3Cx%40mail.example%3E/retry", "/signout",
         "/workflow/timeout/%3Cx%40mail.example%3E"]
#: Where a sign-in might be sent afterwards: local paths, and ways out of the site.
NEXTS = st.one_of(st.sampled_from(["/", "/workflows/x", "//evil.example", "/\t/evil.example", "/%09/evil.example",
                                   "/\\evil.example", "https://evil.example", "/%2F/evil.example",
                                   "/%252F%252Fevil.example", "javascript:alert(1)", " /x", "/\u3000/evil.example"]),
                  st.text(ANY_CHAR, max_size=30))


DASHBOARD = ["/", "/workflows/%3Cx%40mail.example%3E", "/dead-letters"]


@st.composite
def page_requests(draw: st.DrawFn, csrf: str, session: str) -> dict[str, Any]:
    """A request to the API or the dashboard with Authorization and Cookie of
    any text; or, signed in (a real session cookie), a dashboard page."""
    if draw(st.integers(0, 9)) == 0:
        return {"method": "GET", "path": draw(st.sampled_from(DASHBOARD)), "body": b"", "signed_in": True,
                "headers": [(b"Cookie", f"orchestrator_session={session}".encode())]}
    headers: list[tuple[bytes, bytes]] = []
    auth = draw(st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map(lambda t: f"Bearer {t}"),
                          SIGNATURES.map(lambda t: f"Bearer {t}"), st.just(f"Bearer {TOKEN}\u00e9"),
                          st.just(f"Bearer {TOKEN}"), st.sampled_from(["Bearer", "Basic Zm9vOmJhcg==", "bearer  "])))
    if auth is not None:
        headers.append((b"Authorization", draw(as_bytes(auth))))
    future = int(time.time()) + 3600  # a session that has not expired: its MAC is read
    cookie = draw(st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map(lambda t: f"orchestrator_session={t}"),
                            st.integers(0, 2**40).map(lambda n: f"orchestrator_session={n}.{'a' * 64}"),
                            SIGNATURES.map(lambda t: f"orchestrator_session={future}.{t}"),
                            SIGNATURES.map(lambda t: f"orchestrator_session=\u0661\u0662.{t}")))
    if cookie is not None:
        headers.append((b"Cookie", draw(as_bytes(cookie))))
    kind = draw(st.sampled_from(["get", "post", "signin"]))
    if kind == "get":
        return {"method": "GET", "path": draw(st.sampled_from(PATHS)), "headers": headers, "body": b""}
    if kind == "post":
        form = urlencode({"csrf": draw(st.sampled_from([csrf, "", "x"])), "message_id": draw(HEADER_TEXT)})
        return {"method": "POST", "path": draw(st.sampled_from(POSTS)), "body": form.encode(),
                "headers": [*headers, (b"Content-Type", b"application/x-www-form-urlencoded")]}
    nxt = draw(NEXTS)
    token = draw(st.sampled_from([TOKEN, TOKEN, "wrong"]))
    form = urlencode({"csrf": csrf, "token": token, "next": nxt})
    path = draw(st.sampled_from(["/signin", f"/signin?next={quote(nxt, safe='')}"]))
    # A Cookie of its own would change the CSRF token the form must carry: none here.
    return {"method": "POST", "path": path, "body": form.encode(), "next": nxt,
            "headers": [(b"Content-Type", b"application/x-www-form-urlencoded")]}


def leaves_the_site(location: str) -> bool:
    """Whether a browser following ``location`` would leave this site: it
    drops tabs and newlines and reads ``\\`` as ``/`` (WHATWG URL)."""
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/").lstrip("\x00 ")
    return seen.startswith("//") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", seen) is not None


async def test_raw_requests_never_break_the_server(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(SMS_WEBHOOK_SIGNING_KEY=KEY, API_TOKEN=TOKEN)
    signin = await raw_request(p.port, "GET", "/signin", [])
    found = re.search(rb'name="csrf" value="([^"]+)"', signin.body)
    assert found, signin.body[:500]
    csrf = found.group(1).decode()
    form = urlencode({"csrf": csrf, "token": TOKEN, "next": "/"}).encode()
    signin = await raw_request(p.port, "POST", "/signin", [(b"Content-Type", b"application/x-www-form-urlencoded")],
                               form)
    session = re.search(r"orchestrator_session=([^;]+)", signin.headers.get("set-cookie", ""))
    assert session, signin
    watch = LogWatch(p.worker.log_path)
    seen: Counter[str] = Counter()

    @FUZZ
    @given(request=st.one_of(webhook_requests(), page_requests(csrf, session.group(1))))
    def one(request: dict[str, Any]) -> None:  # in a thread of its own: the stub peers keep the test's loop
        note(f"request={describe(request, 300)}")
        method, path = request.get("method", "POST"), request.get("path", WEBHOOK)
        response = asyncio.run(raw_request(p.port, method, path, request["headers"], request["body"],
                                           request.get("pieces")))
        problem = says_why(response)
        if problem and not (path == "/metrics" and response.status == 200):
            raise AssertionError(f"{method} {path}: {problem}: {response.status} {response.body[:300]!r}")
        if path == WEBHOOK:
            _check_webhook(request, response)
        if request.get("signed_in"):  # the API token's bearer check is not the dashboard's sign-in
            assert response.status in (200, 404), \
                f"signed in, yet {path} answers {response.status} {response.body[:200]!r}"
        if "next" in request and response.status in (302, 303):
            location = response.headers.get("location", "")
            assert not leaves_the_site(location), f"sign-in sends the browser off the site: {location!r}"
        seen[f"{request.get('kind', method)} {response.status}"] += 1
        time.sleep(0.03)  # the worker's log line of a request may be written just after its answer
        bad = watch.new_bad()
        assert not bad, f"{method} {path} made the worker log:\n" + "\n".join(bad)

    await asyncio.to_thread(one)
    print(f"requests sent, by kind and status: {sorted(seen.items())}")
    assert p.worker.running
    health = await p.http.get("/health")
    assert health.status_code == 200, health.text
    # Nothing is held: a real email and a real signed ``1`` still send the reply.
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    ok = json.dumps(p.webhook_body("1")).encode()
    answer = await raw_request(p.port, "POST", WEBHOOK, [(b"Content-Type", b"application/json"), *signed(ok)], ok,
                               pieces=[len(ok) // 2])
    assert answer.status == 200 and answer.json()["status"] == "accepted", answer
    await p.reaches(mid, "reply_sent")
    await p.emails(1)


def _check_webhook(request: dict[str, Any], response: RawResponse) -> None:
    """What the webhook must answer, beyond "below 500, with a reason"."""
    if not json_declared(request["content_type"]):
        assert response.status == 415, \
            f"Content-Type {request['content_type']!r} not refused: {response.status} {response.body[:200]!r}"
        return
    if request["signature"] != "signed":
        assert response.status in (401, 413), f"unsigned or badly signed, yet {response.status} {response.body!r}"
        return
    if len(request["body"]) > LIMIT:
        assert response.status == 413, response
    elif request["kind"] == "valid":  # however it was cut, a well-signed gateway body is taken
        assert response.status == 200, f"{response.status} {response.body[:300]!r} (pieces {request['pieces']})"
        assert response.json()["status"] in ("accepted", "ignored", "duplicate"), response.body
