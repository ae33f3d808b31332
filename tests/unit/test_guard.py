"""The sign-in rule's parts that read what a client sent: where a sign-in may
send the browser, whether a session cookie of any bytes signs in, and when the
cookie is Secure (issue 17, items 14, 15 and 16)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from streams.web.api import guarded
from streams.web.guard import CookieSecure, Guard, cookie_secure, local_path, same

HOSTILE = [
    "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "/%5Cevil.example",
    "/%09/evil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/%0a/evil.example",
    "/\x00/evil", "/%00", "/\u2028/evil", "/\u202e/evil", "/\u00a0/evil", " /evil", "/ evil",
    "https://evil.example", "http:/evil.example", "https:evil.example", "//user@evil.example/",
    "/%2F/evil.example", "/%2f/evil.example", "/%252F/evil.example", "/%25252F/evil.example",
    "javascript:alert(1)", "java script:alert(1)", "java\tscript:alert(1)", "data:text/html,x",
    "evil.example", "", "?next=/", "#/", "/%ff%fe", "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", HOSTILE)
def test_a_hostile_next_goes_home(target: str) -> None:
    assert local_path(target) == "/"


@pytest.mark.parametrize("target", [
    "/", "/dead-letters", "/workflows/%3Ca%2Fb%40mail.example%3E", "/workflows/%3Cx%40y%3E?partial=1",
    "/demo/phone", "/workflows/%3C%C3%A9t%C3%A9%40x%3E", "/a/b//c",
])
def test_a_local_path_is_kept(target: str) -> None:
    assert local_path(target) == target


def test_local_path_takes_only_text() -> None:
    assert local_path(None) == "/" and local_path(b"/x") == "/" and local_path(["/x"]) == "/"


def test_the_api_is_matched_by_path_segment() -> None:
    assert guarded("/workflow") and guarded("/workflow/status") and guarded("/workflow/%3Cx%3E/retry")
    assert guarded("/metrics")
    assert not guarded("/workflows/%3Cx%3E") and not guarded("/workflowsX") and not guarded("/metricsX")


def _request(cookie: str | None = None, **headers: str) -> web.Request:
    if cookie is not None and not cookie.isascii():
        # What aiohttp hands over for undecodable bytes (surrogates) cannot be put in a mocked request's headers.
        return cast(web.Request, SimpleNamespace(cookies={"orchestrator_session": cookie}, headers={}))
    found = CIMultiDict(headers)
    if cookie is not None:
        found["Cookie"] = f"orchestrator_session={cookie}"
    return make_mocked_request("GET", "/signin", headers=found)


@pytest.mark.parametrize("cookie", ["1999999999.\udce9\udce9", "١٩٩٩٩٩٩٩٩٩.abc", "\udcff\udcfe", "9.é", "x.y",
                                    "1999999999.", "."])
def test_a_session_cookie_of_any_bytes_is_refused_with_a_reason(cookie: str) -> None:
    guard = Guard.for_token("token-1")
    request = _request(cookie)
    assert not guard.signed_in(request)
    assert "sign in again" in guard.session_problem(request)
    assert guard.csrf(request) == guard.csrf(_request())  # the anonymous token
    assert not guard.check_csrf(request, "\udcff")


def test_no_cookie_or_a_good_one_is_no_problem() -> None:
    guard = Guard.for_token("token-1")
    assert guard.session_problem(_request()) == ""
    assert guard.session_problem(_request(guard.new_session())) == ""
    assert Guard.for_token(None).session_problem(_request("junk")) == ""


def test_comparisons_never_raise() -> None:
    assert same("é", "é") and not same("\udcff", "x") and not same("tök€n", "token")
    assert not Guard.for_token("token-1").token_matches("\udcff", "token-1")


@pytest.mark.parametrize(("headers", "mode", "secure"), [
    ({}, "auto", False),
    ({"X-Forwarded-Proto": "https"}, "auto", True),
    ({"X-Forwarded-Proto": "HTTPS, http"}, "auto", True),
    ({"X-Forwarded-Proto": "http"}, "auto", False),
    ({"Forwarded": 'for=1.2.3.4;proto="https";by=x'}, "auto", True),
    ({"Forwarded": "for=1.2.3.4;proto=http"}, "auto", False),
    ({}, "true", True),
    ({"X-Forwarded-Proto": "https"}, "false", False),
])
def test_the_cookie_is_secure_when_the_browser_came_over_tls(headers: dict[str, str], mode: CookieSecure,
                                                             secure: bool) -> None:
    assert cookie_secure(_request(**headers), mode) is secure


def test_every_route_of_the_dashboard_is_under_its_sign_in_rule() -> None:
    """A page or form added to the dashboard is signed-in like the others: a
    route left out of PAGE_PREFIXES would answer anyone (as /vips once did)."""
    from streams.web.dashboard import ROUTES
    from streams.web.guard import is_page

    paths = {route.path for route in ROUTES if isinstance(route, web.RouteDef)}
    assert {"/vips", "/vips/add", "/lessons", "/analytics"} <= paths
    assert [path for path in sorted(paths) if not is_page(path)] == []
